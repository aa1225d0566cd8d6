//! [`SubprocessOptions`] and [`Stdio`]: how a child is spawned, mirroring
//! `std::process::Command`'s builder, and the `Command` they make.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command};

use crate::error::{Error, Result};
use crate::net::stream::DEFAULT_LIMIT;

/// Where one of a child's standard streams goes (asyncio's `stdin=`,
/// `stdout=`, `stderr=` arguments).
#[derive(Debug, Default)]
pub enum Stdio {
    /// The parent's own stream (asyncio's `None`; the default here, as in
    /// `std::process::Command::spawn`).
    #[default]
    Inherit,
    /// A pipe to the parent, connected as a pipe transport (asyncio's
    /// `subprocess.PIPE`).
    Piped,
    /// `/dev/null` (asyncio's `subprocess.DEVNULL`).
    Null,
    /// For `stderr` only: wherever `stdout` goes, the same pipe if it is
    /// piped (asyncio's `subprocess.STDOUT`).
    Stdout,
    /// An fd of yours: a file, a socket, a pipe end. The child gets it as
    /// the stream; the parent's copy is closed once the child is spawned.
    Fd(OwnedFd),
}

/// How [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec) and
/// [`create_subprocess_exec`](crate::os::process::create_subprocess_exec)
/// spawn a child: its standard streams, working directory and environment,
/// with the names of `std::process::Command`'s builder. `Default` inherits
/// all three streams; [`SubprocessOptions::piped`] pipes them.
///
/// # Examples
///
/// ```
/// use evloop::os::process::{Stdio, SubprocessOptions};
///
/// let options = SubprocessOptions::new()
///     .stdout(Stdio::Piped)
///     .stderr(Stdio::Stdout)
///     .current_dir("/")
///     .env("LC_ALL", "C");
/// # let _ = options;
/// ```
#[derive(Debug)]
pub struct SubprocessOptions {
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    cwd: Option<PathBuf>,
    /// In order; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    pub(crate) limit: usize,
}

impl Default for SubprocessOptions {
    fn default() -> SubprocessOptions {
        SubprocessOptions {
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            cwd: None,
            env: Vec::new(),
            env_clear: false,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl SubprocessOptions {
    /// All three streams inherited, the parent's directory and environment.
    pub fn new() -> SubprocessOptions {
        SubprocessOptions::default()
    }

    /// All three streams piped (what asyncio's low-level `subprocess_exec`
    /// defaults to).
    pub fn piped() -> SubprocessOptions {
        SubprocessOptions::new().stdin(Stdio::Piped).stdout(Stdio::Piped).stderr(Stdio::Piped)
    }

    /// Where the child's stdin comes from.
    pub fn stdin(mut self, stdio: Stdio) -> SubprocessOptions {
        self.stdin = stdio;
        self
    }

    /// Where the child's stdout goes.
    pub fn stdout(mut self, stdio: Stdio) -> SubprocessOptions {
        self.stdout = stdio;
        self
    }

    /// Where the child's stderr goes ([`Stdio::Stdout`]: with stdout).
    pub fn stderr(mut self, stdio: Stdio) -> SubprocessOptions {
        self.stderr = stdio;
        self
    }

    /// The child's working directory (`Command::current_dir`, asyncio's `cwd`).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> SubprocessOptions {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable for the child (`Command::env`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> SubprocessOptions {
        self.env.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Sets several environment variables (`Command::envs`).
    pub fn envs<I, K, V>(mut self, vars: I) -> SubprocessOptions
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes an environment variable from the child's (`Command::env_remove`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> SubprocessOptions {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with an empty environment, plus what
    /// [`env`](SubprocessOptions::env) adds (`Command::env_clear`).
    pub fn env_clear(mut self) -> SubprocessOptions {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// The buffer limit of [`Process`](crate::os::process::Process)'s
    /// stream readers (asyncio's `limit`, default 64 KiB).
    ///
    /// # Panics
    ///
    /// If `limit` is 0.
    pub fn limit(mut self, limit: usize) -> SubprocessOptions {
        assert!(limit > 0, "the stream limit must be positive");
        self.limit = limit;
        self
    }
}

/// A spawned child and the parent's ends of its piped streams.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    /// Indexed by the child's fd: 0 stdin (write end), 1 stdout, 2 stderr.
    pub(crate) pipes: [Option<OwnedFd>; 3],
}

fn std_stdio(stdio: Stdio, which: &str) -> Result<std::process::Stdio> {
    Ok(match stdio {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Piped => std::process::Stdio::piped(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Fd(fd) => std::process::Stdio::from(fd),
        Stdio::Stdout => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Stdio::Stdout is for stderr only, not {which}"),
            )
            .into());
        }
    })
}

/// Spawns `program args…` with `options` (std's `Command` does the
/// fork/exec and reports an exec failure), naming the program in the error.
pub(crate) fn spawn(program: &OsStr, args: &[OsString], options: SubprocessOptions) -> Result<Spawned> {
    let SubprocessOptions { stdin, stdout, stderr, cwd, env, env_clear, limit: _ } = options;
    let mut command = Command::new(program);
    command.args(args);
    if let Some(cwd) = &cwd {
        command.current_dir(cwd);
    }
    if env_clear {
        command.env_clear();
    }
    for (key, value) in &env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.stdin(std_stdio(stdin, "stdin")?);
    // stderr to stdout: both get the same open file; for a pipe, one we
    // make ourselves so that we keep its read end.
    let mut merged_read = None;
    match (stdout, stderr) {
        (Stdio::Piped, Stdio::Stdout) => {
            let (read, write) = io::pipe()?;
            command.stdout(write.try_clone()?);
            command.stderr(write);
            merged_read = Some(OwnedFd::from(read));
        }
        (Stdio::Inherit, Stdio::Stdout) => {
            command.stdout(std::process::Stdio::inherit());
            command.stderr(io::stdout().as_fd().try_clone_to_owned()?);
        }
        (Stdio::Null, Stdio::Stdout) => {
            command.stdout(std::process::Stdio::null());
            command.stderr(std::process::Stdio::null());
        }
        (Stdio::Fd(fd), Stdio::Stdout) => {
            command.stderr(fd.try_clone()?);
            command.stdout(fd);
        }
        (stdout, stderr) => {
            command.stdout(std_stdio(stdout, "stdout")?);
            command.stderr(std_stdio(stderr, "stderr")?);
        }
    }
    let spawned = command.spawn();
    // The command holds the parent's copies of the child's ends (a merged
    // pipe's write end): they must close now, or the reader never sees EOF.
    drop(command);
    let mut child = spawned.map_err(|e| Error::from(e).with_context(format_args!("spawn {program:?}")))?;
    let pipes = [
        child.stdin.take().map(OwnedFd::from),
        merged_read.or_else(|| child.stdout.take().map(OwnedFd::from)),
        child.stderr.take().map(OwnedFd::from),
    ];
    Ok(Spawned { child, pipes })
}
