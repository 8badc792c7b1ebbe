//! Single flight: concurrent misses on one key in this process share one load.
//!
//! The load runs in its own task, so it completes (and fills Redis) even if the request that
//! started it is cancelled; the task removes its own entry when done, so a finished flight is
//! never joined. Callers hold a `Shared` handle to the task's result.
//!
//! The map is shared by loads of every error type, so a failure travels through it type-erased
//! and is turned back into the loader's own error type by the callers of that key (keys are
//! per data type, so a key is only ever loaded by one kind of loader).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{Entry, LoadError};

type Erased = Arc<dyn Any + Send + Sync>;
type SharedLoad = Shared<BoxFuture<'static, Result<Entry, Result<Erased, String>>>>;

#[derive(Clone, Default)]
pub struct Flights {
    /// A std mutex on purpose: it is held only to look up or insert, never across an await.
    inflight: Arc<Mutex<HashMap<String, SharedLoad>>>,
}

/// Whether this caller started the load or joined one already running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Waiter,
}

impl Flights {
    /// Joins the flight for `key`, or starts one running `load`.
    pub async fn run<E: Send + Sync + 'static>(
        &self,
        key: &str,
        load: impl FnOnce() -> BoxFuture<'static, Result<Entry, E>>,
    ) -> (Result<Entry, LoadError<E>>, Role) {
        let (shared, role) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(running) = map.get(key) {
                (running.clone(), Role::Waiter)
            } else {
                let inflight = self.inflight.clone();
                let owned_key = key.to_owned();
                let load = load();
                // The task removes its own entry: even if every caller is cancelled, a finished
                // flight never lingers to be joined later with an old result. (It blocks on the
                // lock we hold until the insert below is done, so it cannot remove too early.)
                let task = tokio::spawn(async move {
                    let out = load.await;
                    inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&owned_key);
                    out
                });
                let shared = async move {
                    match task.await {
                        Ok(Ok(entry)) => Ok(entry),
                        Ok(Err(e)) => Err(Ok(Arc::new(e) as Erased)),
                        Err(join) => Err(Err(format!("cache load task failed: {join}"))),
                    }
                }
                .boxed()
                .shared();
                map.insert(key.to_owned(), shared.clone());
                (shared, Role::Leader)
            }
        };
        let result = shared.await.map_err(|failure| match failure {
            Ok(erased) => erased
                .downcast::<E>()
                .map(LoadError::Loader)
                .unwrap_or_else(|_| {
                    LoadError::Aborted("a load of another type shared the key".into())
                }),
            Err(why) => LoadError::Aborted(why),
        });
        (result, role)
    }
}
