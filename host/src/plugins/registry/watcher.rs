//! Hot reload: the plugins folder and fluid.toml are polled (every 500 ms by default,
//! `PluginSettings::scan_interval`), with no extra dependency and the same behaviour on
//! every file system, network mounts included.
//!
//! A file is acted on only once its size and modification time are the same on two scans
//! in a row, so a file still being copied in is never loaded half-written; and a
//! replacement that fails to load leaves the running version in place. Then:
//! - a new `NAME.wasm` is loaded;
//! - a changed one is swapped for the new version (see `loader`), which resumes from the
//!   same checkpoint; this also re-enables a quarantined plugin;
//! - a removed one is unloaded (its checkpoint and tables stay for a later return; a
//!   task component's tasks are unregistered);
//! - a changed fluid.toml is read again, and every running plugin whose limits, grants
//!   or config changed is swapped to pick them up (a quarantined one waits for `enable`).

use super::loaded::{Failed, FileStamp};
use super::loader::wasm_files;
use super::runtime::PluginRuntime;
use super::trust::Trust;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

type Scan = BTreeMap<PathBuf, FileStamp>;

impl PluginRuntime {
    /// Starts polling the plugins folder, until `shutdown`. Does nothing without a
    /// `scan_interval`.
    pub fn watch(&self) {
        let Some(every) = self.shared.settings.scan_interval else { return };
        let rt = self.clone();
        tokio::spawn(async move {
            let mut prev = Scan::new();
            let mut config_prev = FileStamp::of(&rt.shared.settings.config_path);
            let mut config_seen = config_prev;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = rt.shared.stop.cancelled() => return,
                }
                let config_now = FileStamp::of(&rt.shared.settings.config_path);
                if config_now == config_prev && config_now != config_seen {
                    config_seen = config_now;
                    rt.config_changed().await;
                }
                config_prev = config_now;
                prev = rt.scan(prev).await;
            }
        });
    }

    /// One scan: acts on files stable since `prev`; returns this scan.
    async fn scan(&self, prev: Scan) -> Scan {
        let dir = &self.shared.settings.dir;
        let now: Scan = match wasm_files(dir) {
            Ok(files) => files.into_iter().filter_map(|f| FileStamp::of(&f).map(|s| (f, s))).collect(),
            Err(e) => {
                tracing::warn!(folder = %dir.display(), error = %e, "cannot read the plugins folder");
                return prev;
            }
        };
        let mut loaded: BTreeMap<PathBuf, (Option<String>, FileStamp)> =
            self.shared.loaded.plugins.read().unwrap().values().map(|p| (p.file.clone(), (Some(p.name.clone()), p.stamp))).collect();
        loaded.extend(self.shared.loaded.task_components.read().unwrap().values().map(|t| (t.file.clone(), (None, t.stamp))));
        for (file, stamp) in &now {
            if prev.get(file) != Some(stamp) {
                continue; // new or still changing: look again next scan
            }
            let failed_same = self.shared.loaded.failed.read().unwrap().get(file).is_some_and(|f| f.stands(stamp, Instant::now()));
            let current = loaded.get(file).is_some_and(|(_, s)| s == stamp);
            if !current && !failed_same && self.shared.admin.loading.lock().unwrap().insert(file.clone()) {
                // Each file loads on its own task: a slow compilation holds up no other file
                // (the next scans skip this one until it is done).
                tracing::info!(file = %file.display(), "plugin file added or changed; loading it");
                let (rt, file) = (self.clone(), file.clone());
                tokio::spawn(async move {
                    rt.replace(&file).await;
                    rt.shared.admin.loading.lock().unwrap().remove(&file);
                });
            }
        }
        for (file, (name, _)) in &loaded {
            if !now.contains_key(file) && !prev.contains_key(file) && !self.shared.admin.loading.lock().unwrap().contains(file) {
                match name {
                    Some(name) => drop(self.unload(name).await),
                    None => drop(self.unload_tasks(file)),
                }
            }
        }
        self.shared.loaded.failed.write().unwrap().retain(|f, _| now.contains_key(f) || prev.contains_key(f));
        now
    }

    /// A tightened trust policy applies to what runs now too: every loaded plugin and task
    /// component whose file it no longer admits is unloaded, with the reason in `/plugins`.
    async fn enforce_trust(&self, trust: &Trust) {
        let plugins: Vec<(String, std::path::PathBuf)> =
            self.shared.loaded.plugins.read().unwrap().values().map(|p| (p.name.clone(), p.file.clone())).collect();
        let components: Vec<std::path::PathBuf> = self.shared.loaded.task_components.read().unwrap().keys().cloned().collect();
        let files = plugins.iter().map(|(name, file)| (Some(name.clone()), file.clone())).chain(components.into_iter().map(|f| (None, f)));
        for (plugin, file) in files {
            let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
            let bytes = std::fs::read(&file).unwrap_or_default();
            let Err(reason) = trust.admits(&name, &file, &bytes) else { continue };
            tracing::warn!(file = %file.display(), reason = %reason, "the trust policy no longer admits a running component; it is unloaded");
            match plugin {
                Some(name) => drop(self.unload(&name).await),
                None => drop(self.unload_tasks(&file)),
            }
            let stamp = FileStamp::of(&file);
            self.shared.loaded.failed.write().unwrap().insert(file, Failed::new(reason, stamp, false, None));
        }
    }

    /// fluid.toml changed: read it, and swap the running plugins it now says otherwise about.
    async fn config_changed(&self) {
        let trust_before = self.shared.config.read().unwrap().trust().clone();
        if let Err(e) = self.reload_config() {
            tracing::error!(error = %format!("{e:#}"), "fluid.toml not applied; the previous settings stay in force");
            return;
        }
        tracing::info!(file = %self.shared.settings.config_path.display(), "fluid.toml read again");
        // Files refused before (a missing granted folder, say) get another chance.
        self.shared.loaded.failed.write().unwrap().values_mut().for_each(|f| f.stamp = None);
        let trust = self.shared.config.read().unwrap().trust().clone();
        if trust != trust_before {
            self.enforce_trust(&trust).await;
        }
        let plugins: Vec<_> = self.shared.loaded.plugins();
        for p in plugins {
            let fresh = self.shared.config.read().unwrap().policy(&p.name).ok();
            if !p.sup.quarantined() && fresh.as_ref() != Some(p.policy()) {
                tracing::info!(plugin = %p.name, "settings changed in fluid.toml; reloading the plugin");
                self.replace(&p.file).await;
            }
        }
    }
}
