//! What a plan records: each change as its command, each read as a comment, under
//! a comment naming where it came from; rendered as the bash script `netscript plan`
//! prints.

use std::cell::RefCell;
use std::rc::Rc;

use crate::model::one_line;
use crate::observer::Observer;
use crate::op::Probe;

/// One line of the plan: a change (a command), or a read (shown as a comment).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Change(String),
    Read(String),
    /// A change the plan cannot spell as a command (shown as a comment).
    Note(String),
}

/// What a plan recorded: steps with the origin each came from, in order.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub steps: Vec<(String, Step)>,
    /// Where the steps recorded now come from (set by the `Recorder`).
    pub origin: String,
}

impl Recording {
    /// Records a step under the current origin.
    pub fn push(&mut self, step: Step) {
        let origin = self.origin.clone();
        self.steps.push((origin, step));
    }

    /// The changes only, as commands.
    pub fn commands(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|(_, s)| match s {
                Step::Change(c) => Some(c.clone()),
                Step::Read(_) | Step::Note(_) => None,
            })
            .collect()
    }

    /// A runnable bash script: `header` lines (comments), `set -e`, then the steps,
    /// each group under a `# origin` comment; reads appear as comments.
    pub fn script(&self, header: &[String]) -> String {
        let mut out = String::from("#!/bin/bash\n");
        for h in header {
            out += &comment("", h);
        }
        out += "set -e\n";
        let mut last: Option<&str> = None;
        for (origin, step) in &self.steps {
            if last != Some(origin.as_str()) {
                out += "\n";
                if !origin.is_empty() {
                    out += &comment("", origin);
                }
                last = Some(origin);
            }
            match step {
                Step::Change(c) => out += &format!("{c}\n"),
                Step::Read(c) => out += &comment("(reads) ", c),
                Step::Note(c) => out += &comment("", c),
            }
        }
        out
    }
}

/// `text` as one bash comment line: line breaks and other control characters in it
/// (a quoted argument, a file name) are shown escaped, so they cannot turn the rest
/// into commands.
fn comment(prefix: &str, text: &str) -> String {
    format!("# {prefix}{}\n", one_line(text))
}

/// A shared handle on what a `Plan` records (the session owns the back end itself).
pub type RecordingRef = Rc<RefCell<Recording>>;

/// The session observer of a plan: the origin of each call (a comment above its
/// commands) and each read with its answer (a comment). The changes themselves are
/// recorded by the plan back end, which alone knows whether the model accepted them.
pub struct Recorder(pub RecordingRef);

impl Observer for Recorder {
    fn origin(&mut self, origin: &dyn Fn() -> String) {
        self.0.borrow_mut().origin = origin();
    }

    fn read(&mut self, probe: &Probe, answer: &str) {
        self.0.borrow_mut().push(Step::Read(format!("{}   -> {answer}", probe.render())));
    }
}
