//! Run with: cargo run --example signals
//!
//! Graceful shutdown on SIGINT (Ctrl-C) or SIGTERM: a line echo server
//! that, when told to stop, stops accepting at once, gives the connections
//! it has a grace period to finish, aborts those still open after it, and
//! exits with status 0.
//!
//! The signal handlers are installed with `EventLoop::add_signal_handler`:
//! they run on the loop as ordinary callbacks (never in signal context), so
//! they may complete a future that the main task awaits.
//!
//! By default it runs a demo: two clients connect and are echoed, the
//! program sends itself SIGTERM, the busy client is still served during the
//! grace period and leaves, the idle one is aborted when the grace period
//! (1 s) is over. With `--serve` it waits for a real signal instead:
//! `cargo run --example signals -- --serve --port 8888`, then
//! `nc 127.0.0.1 8888` in two terminals, type a line in each, close one,
//! and press Ctrl-C here. Options: `--port N` (default 0: a free port),
//! `--grace SECS` (default 1 for the demo, 5 with `--serve`). It prints
//! `listening on ADDR` once it accepts connections.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::os::signal::{SIGINT, SIGTERM};
use evloop::{Error, EventLoop, StreamReader, StreamWriter};

/// Echoes lines until the client closes (or the server aborts it).
async fn echo(mut reader: StreamReader, writer: StreamWriter, open: Rc<Cell<usize>>) {
    open.set(open.get() + 1);
    loop {
        match reader.readline().await {
            Ok(line) if line.is_empty() => break, // EOF: the client is done
            Ok(line) => {
                if writer.write(&line).is_err() || writer.drain().await.is_err() {
                    break;
                }
            }
            Err(_) => break, // aborted, or a line over the limit
        }
    }
    writer.close();
    let _ = writer.wait_closed().await;
    open.set(open.get() - 1);
}

/// The demo's two clients; sends the signal itself once both are served.
async fn demo(port: u16, stop: evloop::Future<i32>) -> evloop::Result<()> {
    let (mut idle_r, idle_w) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    let (mut busy_r, busy_w) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    for (r, w, name) in [(&mut idle_r, &idle_w, "idle"), (&mut busy_r, &busy_w, "busy")] {
        w.write(format!("hello from the {name} client\n").as_bytes())?;
        let echo = r.readline().await?;
        println!("[demo] echoed: {}", String::from_utf8_lossy(&echo).trim_end());
    }
    let pid = std::process::id().to_string();
    println!("[demo] kill -TERM {pid}");
    let lp = evloop::get_running_loop()?;
    let kill = lp.run_in_executor(move || std::process::Command::new("kill").args(["-TERM", &pid]).status());
    kill.await??;
    // The shutdown has begun: the busy client finishes within the grace
    // period, the idle one waits to be aborted.
    (&stop).await?;
    busy_w.write(b"one more line during the grace period\n")?;
    let echo = busy_r.readline().await?;
    println!("[demo] echoed: {}", String::from_utf8_lossy(&echo).trim_end());
    busy_w.close();
    let end = idle_r.read(100).await;
    let how = match end {
        Ok(data) if data.is_empty() => "EOF".to_owned(),
        Ok(data) => format!("{} unexpected bytes", data.len()),
        Err(e) => e.to_string(),
    };
    println!("[demo] the idle client was cut off by the server: {how}");
    Ok(())
}

async fn serve(lp: EventLoop, port: u16, grace: Duration, run_demo: bool) -> evloop::Result<()> {
    // The first SIGINT or SIGTERM starts the shutdown; the handlers stay
    // installed (so a second Ctrl-C does not kill the process mid-way).
    let stop = lp.create_future::<i32>();
    for sig in [SIGINT, SIGTERM] {
        let stop = stop.clone();
        lp.add_signal_handler(sig, move || {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if stop.set_result(sig).is_ok() {
                println!("{name}: shutting down");
            } else {
                println!("{name}: already shutting down");
            }
        })?;
    }

    let open = Rc::new(Cell::new(0));
    let o = open.clone();
    let server =
        evloop::start_server(move |r, w| echo(r, w, o.clone()), "127.0.0.1", port, Default::default())
            .await?;
    let addr = server.local_addr().expect("a TCP listener");
    println!("listening on {addr}");
    let demo = run_demo.then(|| evloop::spawn(demo(addr.port(), stop.clone())));

    (&stop).await?;
    // Stop accepting: new clients are refused from here on.
    server.close();
    println!("stopped accepting; waiting up to {grace:?} for {} connection(s)", open.get());
    match evloop::wait_for(server.wait_closed(), grace).await {
        Ok(done) => {
            done?;
            println!("all connections finished");
        }
        Err(Error::Timeout) => {
            let left = server.connections();
            server.abort_clients();
            server.wait_closed().await?;
            println!("grace period over: aborted {left} connection(s)");
        }
        Err(e) => return Err(e),
    }
    for sig in [SIGINT, SIGTERM] {
        lp.remove_signal_handler(sig)?;
    }
    if let Some(demo) = demo {
        demo.await??;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut port, mut grace, mut run_demo) = (0, None, true);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--serve" {
            run_demo = false;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--port" => port = value.parse()?,
            "--grace" => grace = Some(Duration::from_secs_f64(value.parse()?)),
            _ => return Err(format!("unknown option {arg} (try --serve, --port N, --grace SECS)").into()),
        }
    }
    let grace = grace.unwrap_or(Duration::from_secs(if run_demo { 1 } else { 5 }));
    let lp = EventLoop::new()?;
    lp.run_until_complete(serve(lp.clone(), port, grace, run_demo))??;
    lp.close()?;
    println!("bye");
    Ok(())
}
