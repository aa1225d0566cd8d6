//! The `tracing` feature: each task gets a `task` span (target
//! `evloop::task`) with its name, number and spawn location, entered
//! around each poll. A small recording subscriber (below) sees the spans,
//! their fields, every enter/exit, and the span current at each event.
//!
//! Run with: cargo test --features tracing --test tracing

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One span the subscriber saw.
#[derive(Debug, Clone, Default)]
struct SpanRec {
    name: &'static str,
    target: String,
    is_root: bool,
    fields: HashMap<String, String>,
    enters: usize,
    exits: usize,
}

#[derive(Debug, Default)]
struct Seen {
    spans: HashMap<u64, SpanRec>,
    /// Entered spans, innermost last (the test runs on one thread).
    stack: Vec<u64>,
    /// Each event's message and the span it happened in.
    events: Vec<(String, Option<u64>)>,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    next_id: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut rec = SpanRec {
            name: attrs.metadata().name(),
            target: attrs.metadata().target().to_owned(),
            is_root: attrs.is_root(),
            ..Default::default()
        };
        attrs.record(&mut Fields(&mut rec.fields));
        self.seen.lock().unwrap().spans.insert(id, rec);
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut seen = self.seen.lock().unwrap();
        if let Some(rec) = seen.spans.get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut rec.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let mut seen = self.seen.lock().unwrap();
        let current = seen.stack.last().copied();
        seen.events.push((fields.remove("message").unwrap_or_default(), current));
    }
    fn enter(&self, span: &Id) {
        let mut seen = self.seen.lock().unwrap();
        seen.stack.push(span.into_u64());
        if let Some(rec) = seen.spans.get_mut(&span.into_u64()) {
            rec.enters += 1;
        }
    }
    fn exit(&self, span: &Id) {
        let mut seen = self.seen.lock().unwrap();
        assert_eq!(seen.stack.pop(), Some(span.into_u64()), "spans exit innermost first");
        if let Some(rec) = seen.spans.get_mut(&span.into_u64()) {
            rec.exits += 1;
        }
    }
}

impl Recorder {
    fn task_spans(&self) -> Vec<(u64, SpanRec)> {
        let seen = self.seen.lock().unwrap();
        let mut spans: Vec<(u64, SpanRec)> =
            seen.spans.iter().filter(|(_, s)| s.name == "task").map(|(id, s)| (*id, s.clone())).collect();
        spans.sort_by_key(|(id, _)| *id);
        spans
    }

    fn by_name(&self, name: &str) -> (u64, SpanRec) {
        let spans = self.task_spans();
        spans
            .into_iter()
            .find(|(_, s)| s.fields.get("task.name").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no task span named {name}: {:?}", self.task_spans()))
    }
}

#[test]
fn each_task_has_a_span_with_its_name_number_and_spawn_location_entered_around_each_poll() {
    let recorder = Recorder::default();
    let (named_line, unnamed_line, ids) = tracing::subscriber::with_default(recorder.clone(), || {
        let lp = evloop::EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let named_line = line!() + 1;
            let named = evloop::spawn_named("worker", async {
                for _ in 0..3 {
                    evloop::yield_now().await; // 4 polls in all
                }
                tracing::info!("inside the worker");
            });
            let unnamed_line = line!() + 1;
            let unnamed = evloop::spawn(async { tracing::info!("inside the unnamed task") });
            let ids = (named.id(), unnamed.id());
            named.await.unwrap();
            unnamed.await.unwrap();
            tracing::info!("in the main future, no task");
            (named_line, unnamed_line, ids)
        })
        .unwrap()
    });
    assert_eq!(recorder.task_spans().len(), 2, "{:?}", recorder.task_spans());

    let (worker_id, worker) = recorder.by_name("worker");
    assert_eq!(worker.target, "evloop::task");
    assert!(worker.is_root, "a task span has no parent");
    assert_eq!(worker.fields["task.id"], ids.0.to_string());
    assert!(
        worker.fields["spawn.location"].starts_with(&format!("{}:{named_line}:", file!())),
        "{:?}",
        worker.fields
    );
    assert_eq!((worker.enters, worker.exits), (4, 4), "entered around each of the 4 polls");

    // An unnamed task's span carries its default name.
    let default_name = format!("Task-{}", ids.1);
    let (unnamed_id, unnamed) = recorder.by_name(&default_name);
    assert_eq!(unnamed.fields["task.id"], ids.1.to_string());
    assert!(
        unnamed.fields["spawn.location"].starts_with(&format!("{}:{unnamed_line}:", file!())),
        "{:?}",
        unnamed.fields
    );
    assert_eq!((unnamed.enters, unnamed.exits), (1, 1));

    // Events inside a task's poll happen in its span; outside, in none.
    let events = recorder.seen.lock().unwrap().events.clone();
    let span_of = |message: &str| events.iter().find(|(m, _)| m == message).map(|(_, s)| *s);
    assert_eq!(span_of("inside the worker"), Some(Some(worker_id)));
    assert_eq!(span_of("inside the unnamed task"), Some(Some(unnamed_id)));
    assert_eq!(span_of("in the main future, no task"), Some(None));
}

#[test]
fn create_task_on_a_loop_records_the_callers_location_and_a_later_rename() {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        let lp = evloop::EventLoop::new().unwrap();
        let line = line!() + 1;
        let task = lp.create_task(async {
            evloop::yield_now().await;
        });
        task.set_name("before the first poll");
        lp.run_once(None).unwrap(); // the first poll makes the span
        let (_, span) = recorder.by_name("before the first poll");
        assert!(
            span.fields["spawn.location"].starts_with(&format!("{}:{line}:", file!())),
            "{:?}",
            span.fields
        );
        task.set_name("renamed");
        lp.run_until_complete(task).unwrap().unwrap();
        let (_, span) = recorder.by_name("renamed");
        assert_eq!((span.enters, span.exits), (2, 2));
        lp.close().unwrap();
    });
}

#[test]
fn a_panicking_poll_leaves_the_span_and_the_failure_names_the_task() {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        let lp = evloop::EventLoop::new().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s = seen.clone();
        lp.set_exception_handler(Some(move |_: &evloop::EventLoop, ctx: &evloop::ExceptionContext| {
            s.lock().unwrap().push(ctx.to_string());
        }));
        let line = line!() + 1;
        let task = lp.create_task_named("doomed", async { panic!("boom") });
        drop(task);
        lp.run_until_idle().unwrap();
        let (_, span) = recorder.by_name("doomed");
        assert_eq!((span.enters, span.exits), (1, 1), "exited while unwinding");
        assert!(recorder.seen.lock().unwrap().stack.is_empty());
        // Nobody retrieved the failure: the report names the task and
        // where it was spawned.
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("Task exception was never retrieved"), "{}", seen[0]);
        assert!(seen[0].contains("task: doomed"), "{}", seen[0]);
        assert!(seen[0].contains(&format!("{}:{line}:", file!())), "{}", seen[0]);
        drop(seen);
        lp.close().unwrap();
    });
}
