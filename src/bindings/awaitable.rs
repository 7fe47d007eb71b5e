//! A real coroutine for the core's async answers.
//!
//! ADK declares `async def exchange(...)`, and Python promises what a
//! coroutine is: calling the function does nothing, the object it returns
//! passes `asyncio.iscoroutine`, and every way of running one works
//! (`await`, `asyncio.run`, `create_task`, `gather`, `wait_for`,
//! `run_coroutine_threadsafe`, `loop.run_until_complete`), from any thread.
//! [`Coroutine`] is that object: it implements the coroutine protocol
//! (`__await__`, `send`, `throw`, `close`; `collections.abc.Coroutine`
//! recognises it by those methods) over an [`Operation`]:
//!
//! 1. The first step runs [`Operation::begin`] on the awaiting thread. A
//!    cached token is answered right there: the coroutine finishes on its
//!    first step, with no asyncio future and no I/O.
//! 2. Otherwise `begin` hands over a future for the core's runtime. Only now
//!    is an event loop looked up (`asyncio.get_running_loop()`, as any
//!    coroutine would); a loop future is created and yielded to the task,
//!    and the runtime wakes it with `call_soon_threadsafe` when done.
//! 3. The next step takes the output and runs [`Operation::finish`], again on
//!    the awaiting thread (so ADK's result is built there, not on a runtime
//!    worker holding the GIL).
//!
//! Cancelling the task (or `throw`/`close`) cancels the loop future and
//! aborts the waiter; the shared upstream fetch it waited on goes on for the
//! others. A loop closed while a fetch is in flight is simply not woken: the
//! wake-up finds it closed and drops it quietly, and the next loop works.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;

use crate::process;

/// What the runtime side of an operation produces (the operation downcasts it).
pub type Output = Box<dyn Any + Send>;

/// The runtime side of an operation.
pub type Pending = Pin<Box<dyn Future<Output = Output> + Send>>;

/// The outcome of an operation's first step.
pub enum Begin {
    /// The answer, at once.
    Ready(Py<PyAny>),
    /// Wait for this future on the core's runtime.
    Wait(Pending),
}

/// One awaitable piece of work: a synchronous first step, maybe a wait.
pub trait Operation: Send + 'static {
    /// The first step, on the awaiting thread.
    fn begin(&mut self, py: Python<'_>) -> PyResult<Begin>;
    /// Turns the runtime's output into the coroutine's value, on the awaiting thread.
    fn finish(&mut self, py: Python<'_>, output: Output) -> PyResult<Py<PyAny>>;
}

/// Where the runtime leaves its output; `Err` if the waiter task panicked.
type Slot = Arc<Mutex<Option<Result<Output, ()>>>>;

enum State {
    Created(Box<dyn Operation>),
    Waiting {
        op: Box<dyn Operation>,
        future: Py<PyAny>,
        slot: Slot,
        waiter: tokio::task::AbortHandle,
    },
    /// A step is executing (on this or another thread).
    Running,
    Finished,
}

/// A coroutine over a core [`Operation`]; see the module documentation.
#[pyclass(frozen, module = "adk_token_exchange._native")]
pub struct Coroutine {
    name: &'static str,
    state: Mutex<State>,
}

impl Coroutine {
    /// A coroutine that runs `op` when first awaited; `name` is its `__qualname__`.
    pub fn new(name: &'static str, op: impl Operation) -> Self {
        Self {
            name,
            state: Mutex::new(State::Created(Box::new(op))),
        }
    }

    fn take(&self) -> State {
        // Steps never panic while holding this lock (they run outside it).
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, State::Running)
    }

    fn put(&self, state: State) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// One step: `Ok(future)` to yield, or `Err` (StopIteration(value) or an error).
    fn step(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.take() {
            State::Created(mut op) => {
                let begun = op.begin(py);
                match begun {
                    Ok(Begin::Ready(value)) => {
                        self.put(State::Finished);
                        Err(PyStopIteration::new_err((value,)))
                    }
                    Ok(Begin::Wait(pending)) => match schedule(py, pending) {
                        Ok((future, slot, waiter)) => Ok(self.wait(py, op, future, slot, waiter)),
                        Err(e) => {
                            self.put(State::Finished);
                            Err(e)
                        }
                    },
                    Err(e) => {
                        self.put(State::Finished);
                        Err(e)
                    }
                }
            }
            State::Waiting {
                mut op,
                future,
                slot,
                waiter,
            } => {
                let output = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                match output {
                    Some(Ok(output)) => {
                        self.put(State::Finished);
                        let value = op.finish(py, output)?;
                        Err(PyStopIteration::new_err((value,)))
                    }
                    Some(Err(())) => {
                        self.put(State::Finished);
                        Err(PyRuntimeError::new_err(
                            "internal error in adk-token-exchange: the wait for a token panicked \
                             (a bug: please report it)",
                        ))
                    }
                    None => {
                        // Woken without an output: the future was resolved by
                        // someone else (cancelled, say). Surface that, else wait on.
                        let bound = future.bind(py);
                        if bound.call_method0("done")?.is_truthy()? {
                            self.put(State::Finished);
                            waiter.abort();
                            bound.call_method0("result")?;
                            return Err(PyRuntimeError::new_err(
                                "the awaited future finished without a token",
                            ));
                        }
                        bound.setattr("_asyncio_future_blocking", true)?;
                        Ok(self.wait(py, op, future, slot, waiter))
                    }
                }
            }
            State::Running => {
                self.put(State::Running);
                Err(PyValueError::new_err("coroutine already executing"))
            }
            State::Finished => {
                self.put(State::Finished);
                Err(PyRuntimeError::new_err(
                    "cannot reuse already awaited coroutine",
                ))
            }
        }
    }

    /// Waits on `future`: the task gets it to wait for, the state remembers it.
    fn wait(
        &self,
        py: Python<'_>,
        op: Box<dyn Operation>,
        future: Py<PyAny>,
        slot: Slot,
        waiter: tokio::task::AbortHandle,
    ) -> Py<PyAny> {
        let yielded = future.clone_ref(py);
        self.put(State::Waiting {
            op,
            future,
            slot,
            waiter,
        });
        yielded
    }

    /// Stops the coroutine: cancels what it waits for.
    fn stop(&self, py: Python<'_>) {
        let previous = self.take();
        self.put(State::Finished);
        if let State::Waiting { future, waiter, .. } = previous {
            waiter.abort();
            // Cancelling an already finished future is a no-op.
            let _ = future.bind(py).call_method0("cancel");
        }
    }
}

#[pymethods]
impl Coroutine {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    #[pyo3(signature = (value, /))]
    fn send(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let fresh = matches!(
            &*self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Created(_)
        );
        if fresh && !value.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            ));
        }
        self.step(py)
    }

    #[pyo3(signature = (typ, val=None, tb=None, /))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = tb;
        self.stop(py);
        Err(match val {
            Some(val) if !val.is_none() => PyErr::from_value(val),
            _ => PyErr::from_value(typ),
        })
    }

    fn close(&self, py: Python<'_>) {
        self.stop(py);
    }

    #[getter]
    fn __name__(&self) -> &'static str {
        self.name
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        self.name
    }

    #[getter]
    fn cr_running(&self) -> bool {
        matches!(
            &*self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Running
        )
    }

    fn __repr__(&self) -> String {
        format!("<adk_token_exchange coroutine {}>", self.name)
    }
}

/// Starts `pending` on the core's runtime and returns the loop future to yield.
fn schedule(
    py: Python<'_>,
    pending: Pending,
) -> PyResult<(Py<PyAny>, Slot, tokio::task::AbortHandle)> {
    static ASYNCIO: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let asyncio = ASYNCIO.get_or_try_init(py, || py.import("asyncio").map(Bound::unbind))?;
    // Raises "no running event loop" outside one, as any coroutine's first await would.
    let event_loop = asyncio.bind(py).call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    future.setattr("_asyncio_future_blocking", true)?;
    let slot: Slot = Arc::default();
    let filled = Arc::clone(&slot);
    let (event_loop, wake_future) = (event_loop.unbind(), future.clone().unbind());
    // The waiter runs `pending` as its own task, so that a panic in it
    // still wakes the loop (with an error) instead of leaving it waiting.
    let handle = process::runtime_handle();
    let inner = handle.spawn(pending);
    let waiter = handle.spawn(async move {
        let output = inner.await.map_err(drop);
        *filled.lock().unwrap_or_else(|p| p.into_inner()) = Some(output);
        Python::attach(|py| wake(py, event_loop, wake_future));
    });
    Ok((future.unbind(), slot, waiter.abort_handle()))
}

/// Resolves `future` on its loop; a closed loop is not woken (nobody waits).
fn wake(py: Python<'_>, event_loop: Py<PyAny>, future: Py<PyAny>) {
    static RESOLVE: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();
    let resolve = RESOLVE.get_or_try_init(py, || {
        PyCFunction::new_closure(py, None, None, |args, _kwargs| -> PyResult<()> {
            let future = args.get_item(0)?;
            // On the loop's thread, with the GIL: deliver finished fetches' records.
            super::telemetry::flush(args.py());
            if !future.call_method0("done")?.is_truthy()? {
                future.call_method1("set_result", (args.py().None(),))?;
            }
            Ok(())
        })
        .map(Bound::unbind)
    });
    let Ok(resolve) = resolve else { return };
    let event_loop = event_loop.bind(py);
    if event_loop
        .call_method0("is_closed")
        .and_then(|c| c.is_truthy())
        .unwrap_or(true)
    {
        return;
    }
    // It may close between the check and the call: that is an error here, not a problem.
    let _ = event_loop.call_method1("call_soon_threadsafe", (resolve.bind(py), future.bind(py)));
}
