//! `connect-trace explain` as a user runs it. It reads only the built-in
//! catalog, so these tests need no root: when they do run as root, every
//! invocation drops to uid/gid 65534 (nobody) to prove it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic to fail the test"
)]

use std::{
    collections::HashSet,
    os::unix::process::CommandExt as _,
    process::{Command, Output},
};

use connect_trace::errno::catalog;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_connect-trace");

/// The unprivileged user the binary runs as when the tests run as root.
const NOBODY: u32 = 65534;

/// Runs `connect-trace explain ARGS`, without privileges.
fn explain(args: &[&str]) -> Output {
    let mut command = Command::new(BINARY);
    command.arg("explain").args(args);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // std also clears the supplementary groups when it changes uid.
        command.uid(NOBODY).gid(NOBODY);
    }
    command.output().unwrap_or_else(|error| {
        panic!("running {BINARY} as uid {NOBODY} (every directory above it must be searchable by it): {error}")
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Runs a query that must succeed and returns its stdout.
fn explain_ok(args: &[&str]) -> String {
    let output = explain(args);
    assert!(
        output.status.success(),
        "explain {args:?}: {}: {}",
        output.status,
        stderr(&output)
    );
    assert_eq!(stderr(&output), "", "explain {args:?}");
    stdout(&output)
}

/// Runs a query that must fail and returns its one line of stderr.
fn explain_fails(args: &[&str]) -> String {
    let output = explain(args);
    assert!(!output.status.success(), "explain {args:?} succeeded");
    assert_eq!(stdout(&output), "", "explain {args:?}");
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "one line for {args:?}: {text}");
    text
}

#[test]
fn a_name_prints_its_entry() {
    let text = explain_ok(&["ECONNREFUSED"]);
    let entry = catalog::lookup(libc::ECONNREFUSED).unwrap();
    assert!(text.starts_with("ECONNREFUSED (111)\n"), "{text}");
    assert!(text.contains("class:      refused ("), "{text}");
    assert!(text.contains(entry.meaning), "{text}");
    assert!(text.contains(entry.check), "{text}");
    assert!(text.contains(entry.linux_note.unwrap()), "{text}");
    assert!(text.contains("reachable:  yes"), "{text}");
    assert!(text.contains("POSIX.1-2008"), "{text}");
}

#[test]
fn names_numbers_and_negative_returns_give_the_same_entry() {
    let by_name = explain_ok(&["ECONNREFUSED"]);
    for query in ["econnrefused", "111", "-111", " EConnRefused "] {
        assert_eq!(explain_ok(&[query]), by_name, "{query:?}");
    }
    assert_eq!(explain_ok(&["EWOULDBLOCK"]), explain_ok(&["EAGAIN"]));
    assert_eq!(explain_ok(&["ENOTSUP"]), explain_ok(&["95"]));
}

#[test]
fn an_entry_without_a_linux_note_leaves_the_line_out() {
    let text = explain_ok(&["EBADF"]);
    assert!(text.starts_with("EBADF (9)\n"), "{text}");
    assert!(!text.contains("on Linux:"), "{text}");
    assert!(text.contains("class:      caller-bug"), "{text}");
}

#[test]
fn json_is_one_object_with_every_field() {
    let text = explain_ok(&["--json", "ETIMEDOUT"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["name"], "ETIMEDOUT");
    assert_eq!(value["errno"], 110);
    assert_eq!(value["class"], "timeout");
    assert_eq!(value["reachable_on_linux"], "yes");
    assert_eq!(
        value["documented_in"],
        serde_json::json!(["linux", "linux-old", "posix", "bsd"])
    );
    assert!(value["meaning"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(value["check"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(value["linux_note"].is_string());
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), 8, "{object:?}");
    // By number, after the flag or before it, it is the same object.
    assert_eq!(explain_ok(&["110", "--json"]), text);
    let plain: Value = serde_json::from_str(&explain_ok(&["--json", "EBADF"])).unwrap();
    assert!(plain["linux_note"].is_null());
}

#[test]
fn all_lists_every_entry_once() {
    let text = explain_ok(&["--all"]);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("NAME"), "{header}");
    let names: Vec<&str> = lines
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    let expected: Vec<&str> = catalog::entries().iter().map(|e| e.name).collect();
    assert_eq!(names, expected);
    for line in text.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let entry = catalog::lookup_name(columns[0]).unwrap();
        assert_eq!(columns[1], entry.errno.to_string(), "{line}");
        assert_eq!(columns[2], entry.class.name(), "{line}");
        assert_eq!(columns[3], entry.linux.name(), "{line}");
    }
}

#[test]
fn all_as_json_is_the_catalog() {
    let text = explain_ok(&["--all", "--json"]);
    assert_eq!(text.lines().count(), 1);
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value, serde_json::to_value(catalog::entries()).unwrap());
    let array = value.as_array().unwrap();
    assert_eq!(array.len(), catalog::entries().len());
    let classes: HashSet<&str> = catalog::Class::ALL.iter().map(|c| c.name()).collect();
    let mut names = HashSet::new();
    for item in array {
        assert!(names.insert(item["name"].as_str().unwrap()), "{item}");
        assert!(classes.contains(item["class"].as_str().unwrap()), "{item}");
    }
}

#[test]
fn an_unknown_name_fails_with_one_line() {
    let line = explain_fails(&["EFOO"]);
    assert!(line.contains("unknown errno \"EFOO\""), "{line}");
}

#[test]
fn an_unknown_number_fails_with_one_line() {
    let line = explain_fails(&["9999"]);
    assert!(line.contains("9999"), "{line}");
    let line = explain_fails(&["--json", "0"]);
    assert!(line.contains("\"0\""), "{line}");
}

#[test]
fn an_errno_no_manual_lists_for_connect_is_named() {
    let line = explain_fails(&["ENOMEM"]);
    assert!(line.contains("ENOMEM (12)"), "{line}");
    let line = explain_fails(&["12"]);
    assert!(line.contains("ENOMEM (12)"), "{line}");
}

#[test]
fn an_errno_or_all_is_required_but_not_both() {
    let output = explain(&[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("<ERRNO>"), "{}", stderr(&output));
    let output = explain(&["--all", "EPERM"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot be used with"),
        "{}",
        stderr(&output)
    );
}
