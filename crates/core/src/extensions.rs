//! [`Extensions`]: the features' own state, kept beside the core without the core knowing
//! its types.
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// State that features built on the core keep beside it, one value per type.
///
/// The core never names a feature (services, workloads, agents, the cluster); a feature
/// that needs per-daemon state defines its own type and reaches it through this map, and a
/// feature that must be called back (the cluster starting a worker's agent) installs a hook
/// type that the composition root (serve.rs) fills. So dependencies run one way: features
/// → core, never core → features.
#[derive(Default)]
pub struct Extensions(RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Extensions {
    /// Installs `value` as the one `T` (replacing any earlier one).
    pub fn insert<T: Any + Send + Sync>(&self, value: Arc<T>) {
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.insert(TypeId::of::<T>(), value);
    }

    /// The one `T`, if installed.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let map = match self.0.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }

    /// The one `T`, made by `init` the first time it is asked for.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        if let Some(v) = self.get::<T>() {
            return v;
        }
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = map
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
        {
            return v;
        }
        let v = Arc::new(init());
        map.insert(TypeId::of::<T>(), v.clone());
        v
    }
}
