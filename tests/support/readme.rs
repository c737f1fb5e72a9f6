//! README.md's code blocks, for tests that hold the README's examples to the code.

/// The first `language` block after the text `after` (a heading) in README.md.
pub fn readme_block(after: &str, language: &str) -> String {
    let readme = include_str!("../../README.md");
    let from = readme.find(after).expect("the README section");
    let fence = format!("```{language}\n");
    let start = readme[from..].find(&fence).expect("the code block") + from + fence.len();
    let end = readme[start..].find("```").expect("its end") + start;
    readme[start..end].to_owned()
}
