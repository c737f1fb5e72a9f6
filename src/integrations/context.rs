//! What templates and conditions see: `event` (the webhook event: `event.type`,
//! `event.data`, ...), `steps.NAME` of the earlier steps (`status`, `code`, `json`),
//! and `saved.NAME` (values kept by `save`).
//!
//! Templates render with the webhooks' environment (strict: a field that does not exist
//! is an error); conditions are CEL. Before any answer exists (checking the
//! configuration, a dry run) the answers are stand-ins: in a template
//! `steps.lead.json.id` renders as `<steps.lead.json.id>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr};
use serde_json::{json, Value};

use crate::store::runs::{Run, StepRecord, StepStatus};

/// The names a run's templates and conditions see at one step.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The event as webhooks send it.
    pub event: Value,
    /// Earlier steps: `{status, code, json}` each, or a stand-in.
    steps: BTreeMap<String, StepView>,
    saved: BTreeMap<String, Saved>,
}

#[derive(Clone, Debug)]
struct StepView {
    status: &'static str,
    code: Option<u16>,
    json: Option<Value>,
    /// No answer yet: `json` is a stand-in.
    stand_in: bool,
}

#[derive(Clone, Debug)]
enum Saved {
    Value(Value),
    StandIn,
}

impl Scope {
    /// A run's scope before its step `upto`: the answers of the steps before it.
    pub fn of_run(run: &Run, upto: usize) -> Scope {
        let event = serde_json::to_value(&run.event).unwrap_or(Value::Null);
        let steps = run.steps[..upto.min(run.steps.len())]
            .iter()
            .map(|s: &StepRecord| {
                (
                    s.name.clone(),
                    StepView {
                        status: s.status.as_str(),
                        code: s.code,
                        json: s.json.clone(),
                        stand_in: false,
                    },
                )
            })
            .collect();
        let saved = run
            .saved
            .iter()
            .map(|(k, v)| (k.clone(), Saved::Value(v.clone())))
            .collect();
        Scope {
            event,
            steps,
            saved,
        }
    }

    /// A scope with no answers yet: `earlier` steps succeeded with stand-in answers,
    /// and `saved` names stand-in values.
    pub fn stand_in<'a>(
        event: Value,
        earlier: impl IntoIterator<Item = &'a str>,
        saved: impl IntoIterator<Item = &'a str>,
    ) -> Scope {
        Scope {
            event,
            steps: earlier
                .into_iter()
                .map(|name| {
                    (
                        name.to_owned(),
                        StepView {
                            status: StepStatus::Succeeded.as_str(),
                            code: Some(200),
                            json: None,
                            stand_in: true,
                        },
                    )
                })
                .collect(),
            saved: saved
                .into_iter()
                .map(|n| (n.to_owned(), Saved::StandIn))
                .collect(),
        }
    }

    /// The template context.
    pub fn template_context(&self) -> minijinja::Value {
        let steps: BTreeMap<&str, minijinja::Value> = self
            .steps
            .iter()
            .map(|(name, s)| {
                let json = if s.stand_in {
                    minijinja::Value::from_object(StandIn(format!("steps.{name}.json")))
                } else {
                    minijinja::Value::from_serialize(s.json.as_ref().unwrap_or(&Value::Null))
                };
                let view: BTreeMap<&str, minijinja::Value> = BTreeMap::from([
                    ("status", minijinja::Value::from(s.status)),
                    (
                        "code",
                        s.code
                            .map_or(minijinja::Value::from(()), minijinja::Value::from),
                    ),
                    ("json", json),
                ]);
                (name.as_str(), minijinja::Value::from_serialize(&view))
            })
            .collect();
        let saved: BTreeMap<&str, minijinja::Value> = self
            .saved
            .iter()
            .map(|(name, v)| {
                let value = match v {
                    Saved::Value(v) => minijinja::Value::from_serialize(v),
                    Saved::StandIn => {
                        minijinja::Value::from_object(StandIn(format!("saved.{name}")))
                    }
                };
                (name.as_str(), value)
            })
            .collect();
        minijinja::context! {
            event => minijinja::Value::from_serialize(&self.event),
            steps => steps,
            saved => saved,
        }
    }

    /// Renders a template over this scope.
    pub fn render(&self, template: &str) -> Result<String, String> {
        crate::config::templates::render(template, self.template_context())
    }

    /// Evaluates a condition over this scope: true or false, or why it could not be.
    pub fn holds(&self, condition: &cel_interpreter::Program) -> Result<bool, String> {
        let mut context = cel_interpreter::Context::default();
        let steps: BTreeMap<&str, Value> = self
            .steps
            .iter()
            .map(|(name, s)| {
                (
                    name.as_str(),
                    json!({"status": s.status, "code": s.code, "json": s.json.clone().unwrap_or(json!({}))}),
                )
            })
            .collect();
        let saved: BTreeMap<&str, Value> = self
            .saved
            .iter()
            .map(|(name, v)| {
                let value = match v {
                    Saved::Value(v) => v.clone(),
                    Saved::StandIn => json!(format!("<saved.{name}>")),
                };
                (name.as_str(), value)
            })
            .collect();
        for (name, value) in [
            ("event", self.event.clone()),
            ("steps", json!(steps)),
            ("saved", json!(saved)),
        ] {
            context
                .add_variable(name, value)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        match condition.execute(&context) {
            Ok(cel_interpreter::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("gave {other:?}, not true or false")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// An answer not known yet: any field of it is another stand-in, and it renders as
/// its own path in angle brackets.
#[derive(Debug)]
struct StandIn(String);

impl Object for StandIn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        Some(minijinja::Value::from_object(StandIn(format!(
            "{}.{key}",
            self.0
        ))))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(text: &str) -> cel_interpreter::Program {
        crate::config::compile_condition(text, &crate::config::CONTEXT_NAMES).expect("compiles")
    }

    #[test]
    fn templates_and_conditions_see_the_event_the_steps_and_the_saved_values() {
        let event =
            json!({"type": "call.ended", "data": {"direction": "incoming", "duration": 75}});
        let mut scope = Scope::stand_in(event.clone(), [], []);
        assert!(scope
            .holds(&program(
                "event.data.direction == \"incoming\" && event.data.duration >= 60"
            ))
            .expect("decided"));
        assert!(!scope
            .holds(&program("event.data.duration > 75"))
            .expect("decided"));
        let err = scope
            .holds(&program("event.data.nope == 1"))
            .expect_err("no such field");
        assert!(err.contains("nope"), "{err}");

        scope.steps.insert(
            "lead".into(),
            StepView {
                status: "succeeded",
                code: Some(201),
                json: Some(json!({"id": 7})),
                stand_in: false,
            },
        );
        scope.saved.insert("lead_id".into(), Saved::Value(json!(7)));
        assert_eq!(
            scope
                .render("{{ event.type }} {{ steps.lead.code }} {{ steps.lead.json.id }} {{ saved.lead_id }}")
                .as_deref(),
            Ok("call.ended 201 7 7")
        );
        assert!(scope
            .holds(&program("steps.lead.code == 201 && saved.lead_id == 7"))
            .expect("decided"));
        let err = scope
            .render("{{ steps.lead.json.nope }}")
            .expect_err("strict");
        assert!(err.contains("json.nope"), "{err}");
    }

    #[test]
    fn stand_ins_render_as_their_path() {
        let scope = Scope::stand_in(json!({"type": "call.ended"}), ["lead"], ["lead_id"]);
        assert_eq!(
            scope
                .render("/leads/{{ saved.lead_id }}/notes {{ steps.lead.json.data.id }}")
                .as_deref(),
            Ok("/leads/<saved.lead_id>/notes <steps.lead.json.data.id>")
        );
        assert!(scope.render("{{ saved.other }}").is_err());
    }
}
