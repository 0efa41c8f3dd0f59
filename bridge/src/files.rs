//! The process's open-file limit: raised at start towards the hard limit where the system lets
//! us, and split into a budget for connections and a reserve below it.
//!
//! Every socket is a file. A bridge started under a service manager's usual soft limit of 1024
//! would otherwise meet `EMFILE` in `accept` at about a thousand connections, and a listener that
//! cannot accept cannot even refuse. The reserve keeps room for the listener, the runtime, logs,
//! the key file, and the short-lived connections that are only told "no" (see
//! [`crate::serve::REFUSING_AT_ONCE`]).

use std::fmt;

/// The soft limit the bridge asks for (capped by the hard limit). Far above what a bridge needs
/// and below Linux's default `fs.nr_open` (1,048,576), so the request itself cannot fail for
/// being too large.
const WANTED: u64 = 1 << 20;

/// Files kept out of the connection budget whatever the limit: stdio, the listener, the runtime's
/// epoll and wakers, signal handlers, the key file, and [`crate::serve::REFUSING_AT_ONCE`]
/// refusals in progress.
const RESERVED: u64 = 64;

/// What [`raise`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (`u64::MAX` for unlimited).
    pub hard: u64,
    /// The soft limit before, if it was raised.
    pub raised_from: Option<u64>,
    /// Why it could not be read or raised, if so.
    pub problem: Option<String>,
}

/// Set the open-file soft limit: to `wanted` (at most the hard limit) if given
/// (`--open-file-limit`), else raise it towards the hard limit. Never fails: if the limit cannot
/// be read, assume the common 1024; if it cannot be changed, keep what there is. Either way the
/// result says so, for the log.
pub fn apply(wanted: Option<u64>) -> FileLimit {
    match wanted {
        None => raise(),
        Some(n) => set(n),
    }
}

fn set(wanted: u64) -> FileLimit {
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            return FileLimit {
                soft: 1024,
                hard: 1024,
                raised_from: None,
                problem: Some(format!("could not read it ({e}); assuming 1024")),
            }
        }
    };
    let target = wanted.min(hard);
    let mut limit = FileLimit {
        soft,
        hard,
        raised_from: None,
        problem: (target < wanted).then(|| format!("--open-file-limit {wanted} is above it")),
    };
    match rlimit::setrlimit(rlimit::Resource::NOFILE, target, hard) {
        Ok(()) => {
            limit.raised_from = (target > soft).then_some(soft);
            limit.soft = target;
        }
        Err(e) => limit.problem = Some(format!("could not set it to {target} ({e})")),
    }
    limit
}

fn raise() -> FileLimit {
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            return FileLimit {
                soft: 1024,
                hard: 1024,
                raised_from: None,
                problem: Some(format!("could not read it ({e}); assuming 1024")),
            }
        }
    };
    match rlimit::increase_nofile_limit(WANTED) {
        Ok(now) if now > soft => FileLimit {
            soft: now,
            hard,
            raised_from: Some(soft),
            problem: None,
        },
        Ok(_) => FileLimit {
            soft,
            hard,
            raised_from: None,
            problem: None,
        },
        Err(e) => FileLimit {
            soft,
            hard,
            raised_from: None,
            problem: Some(format!("could not raise it ({e})")),
        },
    }
}

impl FileLimit {
    /// Files kept back from connections: a fixed part plus one sixteenth of the limit.
    pub fn reserve(&self) -> u64 {
        RESERVED + self.soft / 16
    }

    /// Files connections may use: the soft limit minus [`FileLimit::reserve`], at least 2 (one
    /// HTTP connection), and no more than `cap`.
    pub fn budget(&self, cap: usize) -> usize {
        let room = self.soft.saturating_sub(self.reserve()).max(2);
        usize::try_from(room).unwrap_or(usize::MAX).min(cap)
    }
}

impl fmt::Display for FileLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hard = match self.hard {
            u64::MAX => "unlimited".to_owned(),
            n => n.to_string(),
        };
        match self.raised_from {
            Some(from) => write!(f, "open-file limit raised from {from} to {}", self.soft)?,
            None => write!(f, "open-file limit {}", self.soft)?,
        }
        write!(f, " (hard limit {hard})")?;
        if let Some(problem) = &self.problem {
            write!(f, "; {problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(soft: u64) -> FileLimit {
        FileLimit {
            soft,
            hard: soft,
            raised_from: None,
            problem: None,
        }
    }

    #[test]
    fn the_budget_stays_below_the_limit() {
        assert_eq!(limit(1024).reserve(), 128);
        assert_eq!(limit(1024).budget(usize::MAX), 896);
        assert_eq!(limit(1024).budget(100), 100);
        assert_eq!(limit(10).budget(usize::MAX), 2);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let (before, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let after = apply(None);
        assert!(after.soft >= before, "{after}");
        assert!(after.soft <= after.hard);
        assert_eq!(
            rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0,
            after.soft
        );
    }
}
