//! The README's sample session is the output of the current binary: each `$ spark-sim ...`
//! command of its first code block is run from the workspace root and compared with what
//! the README shows. `generate`: the printed text, and the logits digest of the stderr
//! note (greedy decoding is deterministic; the speeds and the kernels' name in the note
//! depend on the machine and are not compared). `inspect`: every line shown before the
//! `...` that cuts the tensor list. `plan`: every line. `bench` timings vary from run to
//! run and are not compared.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first code block after the heading `## A short session`.
fn sample_session(readme: &str) -> &str {
    let section = &readme[readme.find("## A short session").expect("README has the sample-session section")..];
    let start = section.find("```\n").expect("the section has a code block") + 4;
    let len = section[start..].find("```").expect("the code block ends");
    &section[start..start + len]
}

/// One `$ spark-sim ...` command of the session and the lines shown after it.
#[derive(Debug)]
struct Sample {
    args: Vec<String>,
    shown: Vec<String>,
}

fn samples(block: &str) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ spark-sim ") {
            out.push(Sample { args: shell_words(cmd), shown: Vec::new() });
        } else if let Some(s) = out.last_mut() {
            s.shown.push(line.trim_end().to_string());
        }
    }
    for s in &mut out {
        while s.shown.last().is_some_and(|l| l.is_empty()) {
            s.shown.pop();
        }
    }
    out
}

/// Split a command line as a POSIX shell would for the cases the README uses: words
/// separated by spaces, '...' and "..." quoting, and a `#` comment at the start of a word.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut cur, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    cur.push(q);
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn run(args: &[String]) -> (String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_spark-sim"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("spark-sim runs");
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "spark-sim {args:?} failed: {err}");
    (out, err)
}

/// The hex digest of a `generate` note (`... logits digest 0123456789abcdef]`).
fn digest_of(note: &str) -> Option<&str> {
    let i = note.rfind("logits digest ")? + "logits digest ".len();
    note.get(i..i + 16).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn trimmed_lines(s: &str) -> Vec<String> {
    s.lines().map(|l| l.trim_end().to_string()).collect()
}

#[test]
fn shell_words_split_like_the_shell() {
    assert_eq!(
        shell_words(r#"generate --prompt "Ownership is" --tokens 40"#),
        ["generate", "--prompt", "Ownership is", "--tokens", "40"]
    );
    assert_eq!(shell_words("bench attn   # a comment"), ["bench", "attn"]);
    assert_eq!(shell_words("a 'b c'd \"\" e#f"), ["a", "b cd", "", "e#f"]);
    assert_eq!(digest_of("[7 prompt tokens ..., logits digest 495902f65b7edf98]"), Some("495902f65b7edf98"));
    assert_eq!(digest_of("[no digest here]"), None);
}

#[test]
fn readme_sample_session_is_the_current_output() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md readable");
    let samples = samples(sample_session(&readme));
    let names: Vec<&str> = samples.iter().map(|s| s.args[0].as_str()).collect();
    for want in ["generate", "inspect", "plan"] {
        assert!(names.contains(&want), "the README session has no `spark-sim {want}` (has {names:?})");
    }
    for s in &samples {
        match s.args[0].as_str() {
            "generate" => {
                let (out, err) = run(&s.args);
                let (note, text) = s.shown.split_last().expect("generate shows its output");
                let shown = digest_of(note).unwrap_or_else(|| panic!("no logits digest in the README's note {note:?}"));
                let got =
                    err.lines().find_map(digest_of).unwrap_or_else(|| panic!("no logits digest on stderr: {err}"));
                assert_eq!(shown, got, "README.md shows logits digest {shown}, `spark-sim {:?}` prints {got}", s.args);
                assert_eq!(
                    text,
                    trimmed_lines(&out),
                    "README.md shows other text than `spark-sim {:?}` prints",
                    s.args
                );
            }
            "inspect" => {
                let (out, _) = run(&s.args);
                let shown = s.shown.iter().take_while(|l| l.as_str() != "...").cloned().collect::<Vec<_>>();
                assert!(shown.len() >= 10, "the README shows too little of inspect: {shown:?}");
                assert_eq!(shown, trimmed_lines(&out)[..shown.len().min(out.lines().count())]);
            }
            "plan" => {
                let (out, _) = run(&s.args);
                assert_eq!(s.shown, trimmed_lines(&out), "README.md shows another plan than `spark-sim {:?}`", s.args);
            }
            _ => {}
        }
    }
}
