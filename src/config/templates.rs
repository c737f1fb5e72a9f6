//! The template environment webhook bodies and integration steps share: minijinja,
//! strict about undefined fields (a CRM would store the blank), with one way of
//! reporting an error: the template's own line and the expression at fault.

/// A minijinja environment that refuses undefined fields.
pub fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// Why `template` does not compile (`template line N: ...`), or `None` when it does.
pub fn syntax_error(template: &str) -> Option<String> {
    environment().template_from_str(template).err().map(|e| {
        format!(
            "template line {}: {}",
            e.line().unwrap_or(1),
            e.detail().unwrap_or("syntax error")
        )
    })
}

/// Renders `template` over `context`; an error names the template's line and the
/// expression at fault, as written.
pub fn render(template: &str, context: minijinja::Value) -> Result<String, String> {
    environment()
        .render_str(template, context)
        .map_err(|e| describe(&e, template))
}

fn describe(e: &minijinja::Error, template: &str) -> String {
    let what = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    let at = e
        .range()
        .and_then(|r| template.get(r))
        .map(|text| format!(" in `{}`", text.trim()))
        .unwrap_or_default();
    match e.line() {
        Some(line) => format!("template line {line}: {what}{at}"),
        None => format!("{what}{at}"),
    }
}
