//! Run with: cargo run --example chat
//!
//! A line-based chat server on the streams API. A client first sends its
//! name; after that every line it sends goes to every other client.
//!
//! Each client has an outgoing [`Queue`] and two tasks in a [`TaskGroup`]:
//! a reader that turns its lines into messages in the other clients'
//! queues, and a writer that sends what arrives in its own queue. Whichever
//! ends first ends the other: at EOF (or `/quit`) the reader puts a
//! `Leave` marker in its own queue so the writer finishes; if writing fails
//! (the client vanished), the group cancels the reader. The queues are
//! bounded: a client that does not keep up loses lines instead of making
//! the server buffer without limit.
//!
//! By default the example runs a demo on a free port: alice, bob and carol
//! (tasks using `open_connection`) join, wait until all three are in, send
//! two lines each, check that they received exactly the other two's four
//! lines, and leave; then the server closes and the program exits.
//!
//! `--serve [PORT]` serves forever (default port 7777); chat with
//! `nc 127.0.0.1 7777` from a few terminals.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use evloop::sync::{Event, Queue};
use evloop::{Error, StreamReader, StreamWriter, TaskGroup};

/// How many lines may wait for a slow client before new ones are dropped.
const OUTBOX_SIZE: usize = 100;

/// What a client's writer task receives.
enum Outgoing {
    Line(Rc<str>),
    /// The client's reader has finished: stop.
    Leave,
}

struct Member {
    name: String,
    outbox: Queue<Outgoing>,
}

/// Everyone connected, by join order.
#[derive(Default)]
struct Room {
    members: RefCell<BTreeMap<u64, Member>>,
    next_id: Cell<u64>,
}

impl Room {
    fn join(&self, name: &str) -> (u64, Queue<Outgoing>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let outbox = Queue::new(OUTBOX_SIZE);
        let member = Member { name: name.to_owned(), outbox: outbox.clone() };
        self.members.borrow_mut().insert(id, member);
        (id, outbox)
    }

    fn leave(&self, id: u64) {
        self.members.borrow_mut().remove(&id);
    }

    fn names(&self) -> Vec<String> {
        self.members.borrow().values().map(|m| m.name.clone()).collect()
    }

    /// Queues `text` for every member except `from`.
    fn broadcast(&self, from: Option<u64>, text: &str) {
        let line: Rc<str> = text.into();
        for (id, member) in self.members.borrow().iter() {
            if Some(*id) != from && member.outbox.put_nowait(Outgoing::Line(line.clone())).is_err() {
                println!("[server] {} is not keeping up; a line was dropped", member.name);
            }
        }
    }
}

async fn handle_client(room: Rc<Room>, mut reader: StreamReader, writer: StreamWriter) {
    if writer.write(b"welcome to the chat; your name?\n").is_err() {
        return;
    }
    let name = match reader.readline().await {
        Ok(line) => String::from_utf8_lossy(&line).trim().to_owned(),
        Err(_) => String::new(),
    };
    if name.is_empty() {
        writer.close();
        return;
    }
    let (id, outbox) = room.join(&name);
    let online = room.names().join(", ");
    println!("[server] {name} joined; online: {online}");
    writer.write(format!("hello {name}; online: {online}\n").as_bytes()).ok();
    room.broadcast(Some(id), &format!("* {name} joined"));

    let group = TaskGroup::new();
    group.spawn(read_lines(room.clone(), id, name.clone(), reader, outbox.clone()));
    group.spawn(write_lines(writer.clone(), outbox));
    if let Err(e) = group.await {
        println!("[server] {name}'s connection failed: {e}");
    }

    room.leave(id);
    println!("[server] {name} left");
    room.broadcast(None, &format!("* {name} left"));
    writer.close();
    let _ = writer.wait_closed().await;
}

/// Broadcasts the client's lines until EOF or `/quit`.
async fn read_lines(
    room: Rc<Room>,
    id: u64,
    name: String,
    mut reader: StreamReader,
    own_outbox: Queue<Outgoing>,
) -> evloop::Result<()> {
    loop {
        let line = reader.readline().await?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if line.is_empty() || text == "/quit" {
            break;
        }
        println!("[server] {name}: {text}");
        room.broadcast(Some(id), &format!("{name}: {text}"));
    }
    // `put`, not `put_nowait`: the marker must get through a full queue.
    // Never shut down: the put cannot fail.
    let _ = own_outbox.put(Outgoing::Leave).await;
    Ok(())
}

/// Sends what arrives in the client's queue, until `Leave`.
async fn write_lines(writer: StreamWriter, outbox: Queue<Outgoing>) -> evloop::Result<()> {
    loop {
        match outbox.get().await? {
            Outgoing::Line(line) => {
                writer.writelines([line.as_bytes(), b"\n"])?;
                writer.drain().await?;
            }
            Outgoing::Leave => return Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------
// The demo.

/// Lets `n` tasks wait until all of them have arrived (asyncio's `Barrier`,
/// single use), built on an [`Event`].
#[derive(Clone)]
struct Barrier {
    missing: Rc<Cell<usize>>,
    all_here: Event,
}

impl Barrier {
    fn new(n: usize) -> Barrier {
        Barrier { missing: Rc::new(Cell::new(n)), all_here: Event::new() }
    }

    async fn wait(&self) {
        self.missing.set(self.missing.get() - 1);
        if self.missing.get() == 0 {
            self.all_here.set();
        }
        self.all_here.wait().await;
    }
}

const PEOPLE: [(&str, [&str; 2]); 3] = [
    ("alice", ["hi all", "anyone tried evloop?"]),
    ("bob", ["hello alice", "yes, it is asyncio in Rust"]),
    ("carol", ["hey", "see you later"]),
];

async fn read_line(reader: &mut StreamReader) -> evloop::Result<String> {
    let line = reader.readline().await?;
    if line.is_empty() {
        return Err(std::io::Error::other("the server closed the connection").into());
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// One simulated person: joins, chats, checks what the others said.
async fn person(
    port: u16,
    name: &'static str,
    lines: [&'static str; 2],
    joined: Barrier,
    done: Barrier,
) -> evloop::Result<()> {
    let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    read_line(&mut reader).await?; // The name prompt.
    writer.write(format!("{name}\n").as_bytes())?;
    println!("[{name}] {}", read_line(&mut reader).await?);
    // Chat only once everyone is in, so everyone hears every line.
    joined.wait().await;

    for line in lines {
        writer.write(format!("{line}\n").as_bytes())?;
        writer.drain().await?;
    }
    let mut expected: Vec<String> = PEOPLE
        .iter()
        .filter(|(other, _)| *other != name)
        .flat_map(|(other, lines)| lines.map(|line| format!("{other}: {line}")))
        .collect();
    let mut heard = Vec::new();
    while heard.len() < expected.len() {
        let line = read_line(&mut reader).await?;
        println!("[{name}] {line}");
        // "* bob joined" and the like: news, not chat.
        if !line.starts_with("* ") {
            heard.push(line);
        }
    }
    // Lines from different people may interleave; compare as sets.
    heard.sort();
    expected.sort();
    if heard != expected {
        return Err(std::io::Error::other(format!("{name} heard {heard:?}, expected {expected:?}")).into());
    }
    println!("[{name}] heard all {} lines from the others; leaving", heard.len());
    // Stay until everyone has heard everything, then leave.
    done.wait().await;
    writer.write(b"/quit\n")?;
    read_to_eof(name, &mut reader).await?;
    writer.close();
    writer.wait_closed().await
}

/// Shows what is left to read until the server closes the connection.
async fn read_to_eof(name: &str, reader: &mut StreamReader) -> evloop::Result<()> {
    loop {
        let line = reader.readline().await?;
        if line.is_empty() {
            return Ok(());
        }
        println!("[{name}] {}", String::from_utf8_lossy(&line).trim_end());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut serve_forever = false;
    let mut port = 0;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => {
                serve_forever = true;
                port = 7777;
            }
            other if serve_forever => port = other.parse().map_err(|_| format!("bad port {other:?}"))?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    evloop::run(async move {
        let room = Rc::new(Room::default());
        let server_room = room.clone();
        let server = evloop::start_server(
            move |reader, writer| handle_client(server_room.clone(), reader, writer),
            "127.0.0.1",
            port,
            Default::default(),
        )
        .await?;
        let addr = server.local_addr().expect("a TCP server has an address");
        println!("[server] chat server on {addr}");
        if serve_forever {
            return server.serve_forever().await;
        }

        let (joined, done) = (Barrier::new(PEOPLE.len()), Barrier::new(PEOPLE.len()));
        let people =
            PEOPLE.map(|(name, lines)| person(addr.port(), name, lines, joined.clone(), done.clone()));
        // `gather_results` waits for everyone, so a failure names who failed.
        let outcomes = evloop::gather_results(people).await;
        server.close();
        server.wait_closed().await?;
        for ((name, _), outcome) in PEOPLE.iter().zip(&outcomes) {
            if let Err(e) = outcome {
                return Err(std::io::Error::other(format!("{name} failed: {e}")).into());
            }
        }
        println!("[demo] everyone heard everyone; {} still online", room.names().len());
        Ok::<_, Error>(())
    })??;
    Ok(())
}
