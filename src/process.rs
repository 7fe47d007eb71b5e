//! What belongs to one process: its tokio runtime, its HTTP clients, its
//! credential registry. A `fork()`ed child gets fresh ones.
//!
//! A child inherits the parent's memory but only the forking thread: a lock
//! that a runtime worker (or a thread waiting with the GIL released) held at
//! the moment of the fork stays locked forever, and the runtime's workers are
//! gone. So nothing per-process is reached through a lock that the child
//! could inherit locked: each lives in a [`PerProcess`] cell, which hands the
//! child a new value (the parent's is leaked on purpose: dropping it would
//! join threads that do not exist, or take the very locks that are stuck).
//!
//! The child learns that it is one from `os.register_at_fork` (registered
//! by the bindings), which calls [`forked`]; the cold paths (starting the
//! runtime) also compare the pid, for forks that bypass Python.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static GENERATION: AtomicU64 = AtomicU64::new(1);
static PID: AtomicU32 = AtomicU32::new(0);

/// The current process generation: bumped in every forked child.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Declares this process a forked child: every [`PerProcess`] value starts over.
pub fn forked() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    PID.store(std::process::id(), Ordering::Release);
}

/// Bumps the generation if the pid changed since last checked (a fork that
/// Python did not see). Costs a syscall: cold paths only.
fn check_pid() {
    let pid = std::process::id();
    let seen = PID.swap(pid, Ordering::AcqRel);
    if seen != 0 && seen != pid {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
}

/// A value per process generation, built on first use in each.
pub struct PerProcess<T: 'static> {
    current: AtomicPtr<(u64, T)>,
}

impl<T: 'static> PerProcess<T> {
    pub const fn new() -> Self {
        Self {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This generation's value, built with `init` if there is none yet.
    pub fn get_or_init(&'static self, init: impl FnOnce() -> T) -> &'static T {
        self.get_or_init_at(generation(), init)
    }

    fn get_or_init_at(&'static self, generation: u64, init: impl FnOnce() -> T) -> &'static T {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: pointers stored here come from `Box::leak` and are never freed.
        if let Some((g, value)) = unsafe { p.as_ref() } {
            if *g == generation {
                return value;
            }
        }
        let fresh: &'static mut (u64, T) = Box::leak(Box::new((generation, init())));
        match self
            .current
            .compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => &fresh.1,
            Err(winner) => {
                // Another thread installed one first (generations only change
                // in a freshly forked, single-threaded child, so it is of this
                // generation): use it. Ours was never shared, so free it.
                // SAFETY: `fresh` came from Box::leak just above.
                drop(unsafe { Box::from_raw(fresh as *mut (u64, T)) });
                // SAFETY: as above, never freed.
                unsafe { &(*winner).1 }
            }
        }
    }

    /// This generation's value, if built.
    pub fn get(&'static self) -> Option<&'static T> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: see `get_or_init`.
        unsafe { p.as_ref() }
            .filter(|(g, _)| *g == generation())
            .map(|(_, v)| v)
    }
}

impl<T: 'static> Default for PerProcess<T> {
    fn default() -> Self {
        Self::new()
    }
}

static RUNTIME: PerProcess<OnceLock<Runtime>> = PerProcess::new();

/// The current process's runtime, started on first use.
pub fn runtime() -> &'static Runtime {
    check_pid();
    RUNTIME.get_or_init(OnceLock::new).get_or_init(|| {
        Builder::new_multi_thread()
            // Token fetches are few and I/O bound; two workers are plenty and
            // keep the footprint small inside agent processes.
            .worker_threads(2)
            .thread_name("adk-token-exchange")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime (out of threads or memory?)")
    })
}

/// A handle to the current process's runtime.
pub fn runtime_handle() -> Handle {
    runtime().handle().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_gets_a_fresh_value_even_if_the_old_one_is_locked() {
        // (The generation is passed explicitly: bumping the global one would
        // reset every other test's runtime and registry mid-run.)
        static COUNTER: PerProcess<std::sync::Mutex<u32>> = PerProcess::new();
        let now = generation();
        *COUNTER
            .get_or_init_at(now, Default::default)
            .lock()
            .unwrap() += 1;
        // A parent thread holding the lock at the moment of the fork...
        std::mem::forget(
            COUNTER
                .get_or_init_at(now, Default::default)
                .lock()
                .unwrap(),
        );
        // ...does not hang the child: it sees a new value.
        let child = COUNTER.get_or_init_at(now + 1, Default::default);
        assert_eq!(*child.try_lock().expect("not inherited locked"), 0);
    }
}
