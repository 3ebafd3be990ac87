//! Re-embedding the index with another model without ever breaking search: a new generation is
//! built beside the served one by a job (any runner, any replica, resumable after `kill -9` by
//! its chunks' leases), catches up with what changed meanwhile, and becomes current in one
//! pointer write; the old one is kept for a rollback until the next switch.
//!
//! Searches keep being answered by the current generation throughout. Ingests and deletes keep
//! going to the current generation; the build takes them in by a catch-up pass (every image the
//! current generation has and the new one lacks or holds differently) once its listing is done,
//! and again with writes paused for the moment of the switch, so nothing acknowledged during the
//! build is missing afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::generations::{self as gens, model_ref, BuildInfo, Generation, SWITCH_ABANDONED, SWITCH_SETTLE};
use super::ingest::read_at_most;
use super::pipeline::FileResult;
use super::{blocking, Engine, EngineError};
use crate::embed::{preprocess, ClipModel, ModelOptions};
use crate::metrics;
use crate::store::{exported, Building, GenerationRef, Generations, ImageRecord, JobState, JobStore, VectorStore};

/// Images read per page when listing or comparing generations.
const PAGE: usize = 512;

/// One image re-embedded: its record, its vector by the new model, its other known paths.
struct Reembedded {
    record: ImageRecord,
    vector: Vec<f32>,
    aliases: Vec<String>,
}

impl Engine {
    /// Starts building a generation for `target` and records it in the pointer with the job
    /// that will fill it (`job_id`). The model loads in the background.
    pub(crate) async fn begin_build(&self, target: ModelOptions, job_id: &str) -> Result<BuildInfo, EngineError> {
        let target_ref = model_ref(&target);
        let _changing = self.served.changing.lock().await;
        let current = self.current();
        let pointer = self.read_pointer().await?;
        if let Some(b) = &pointer.building {
            return Err(EngineError::ReembedRunning { generation: b.generation.name.clone(), job_id: b.job_id.clone() });
        }
        let current_model = pointer.current.model.clone().unwrap_or_else(|| current.model_ref.clone());
        if current_model == target_ref {
            return Err(EngineError::NothingToReembed(format!(
                "the index is already embedded with {} ({})",
                target_ref.source, target_ref.precision
            )));
        }
        let name = pointer.next_name();
        let building = Building {
            generation: GenerationRef { name: name.clone(), model: Some(target_ref) },
            job_id: job_id.to_string(),
            started_at: OffsetDateTime::now_utc(),
        };
        let mut next_pointer = Generations { building: Some(building.clone()), last_number: pointer.last_number + 1, ..pointer.clone() };
        next_pointer.current.model = Some(current_model);
        if !self.replace_pointer(&pointer, &next_pointer).await? {
            return Err(EngineError::CannotReembed("another replica changed the index generations at the same moment; try again".into()));
        }
        let home = self.served.home.clone();
        let store_name = name.clone();
        let store = blocking(move || Ok(home.open_generation(&store_name)?)).await?;
        self.served.set_next(Some(Arc::new(Generation::beside(&name, target, store))));
        tracing::info!(generation = %name, model = %building.generation.model.as_ref().map_or("", |m| m.source.as_str()), job = job_id, "re-embed started");
        Ok(BuildInfo::from(&building))
    }

    /// Ids of the current generation's images, for a re-embed job's listing.
    pub(crate) async fn current_ids(&self) -> Result<Vec<String>, EngineError> {
        let store = self.current().store.clone();
        blocking(move || Ok(exported(store.as_ref(), PAGE).map(|item| item.map(|(record, _)| record.id)).collect::<Result<_, _>>()?)).await
    }

    /// Embeds the images `ids` of the current generation with the building one's model and
    /// writes them into it, `window` at a time; `on_done` hears of each once it is durable.
    pub(crate) async fn reembed_images(
        self: &Arc<Self>,
        ids: Vec<String>,
        window: usize,
        stop: &AtomicBool,
        mut on_done: impl FnMut(String, FileResult),
    ) {
        // A runner may claim the build's work before this process has followed the pointer to it.
        let loaded = async {
            let _changing = self.served.changing.lock().await;
            self.load_building().await
        };
        let (current, next, model) = match async {
            loaded.await?;
            self.build_parts().await
        }
        .await
        {
            Ok(parts) => parts,
            Err(e) => {
                let why = e.to_string();
                ids.into_iter().for_each(|id| on_done(id, FileResult::Failed(why.clone())));
                return;
            }
        };
        let mut todo = ids.into_iter();
        let mut in_flight = JoinSet::new();
        let mut batch = Vec::new();
        loop {
            while in_flight.len() < window.max(1) && !stop.load(Ordering::Relaxed) {
                let Some(id) = todo.next() else { break };
                let (engine, current, model) = (self.clone(), current.clone(), model.clone());
                in_flight.spawn(async move {
                    let outcome = engine.reembed_one(&current, &model, &id).await;
                    (id, outcome)
                });
            }
            let Some(joined) = in_flight.join_next().await else { break };
            let (id, outcome) = joined.unwrap_or_else(|e| (String::new(), Err(EngineError::Internal(format!("re-embed task: {e}")))));
            match outcome {
                Ok(Some(Reembedded { record, vector, aliases })) => batch.push((id, record, vector, aliases)),
                // Gone from the index since it was listed.
                Ok(None) => on_done(id, FileResult::Skipped),
                Err(e) => on_done(id, FileResult::Failed(e.to_string())),
            }
            if batch.len() >= window / 2 || (in_flight.is_empty() && !batch.is_empty()) {
                for (id, result) in self.write_built(&next.store, std::mem::take(&mut batch)).await {
                    on_done(id, result);
                }
            }
        }
        for (id, result) in self.write_built(&next.store, batch).await {
            on_done(id, result);
        }
    }

    /// The current generation, the one being built, and its model once loaded.
    async fn build_parts(&self) -> Result<(Arc<Generation>, Arc<Generation>, Arc<ClipModel>), EngineError> {
        let next = self.load_building().await?;
        next.embedder.wait_loaded().await?;
        let model = next.model()?;
        Ok((self.current(), next, model))
    }

    /// The built generation `next` as it is to be served: over the same store, its model loaded
    /// again at normal priority with the served model's threads. The build's copy runs niced with
    /// one thread less, and a process cannot raise its threads' priority again without privileges.
    async fn served_copy(&self, named: &GenerationRef, next: &Arc<Generation>) -> Result<Arc<Generation>, EngineError> {
        let serving = Arc::new(Generation::replacing(&next.name, self.served.options_for(named), next.store.clone()));
        serving.embedder.wait_loaded().await?;
        serving.model()?;
        Ok(serving)
    }

    /// Reads an indexed image's file (or stored upload) and embeds it with `model`; `None` when
    /// the image is no longer indexed. The file is read, decoded and prepared on the background
    /// threads (and the model's own threads run at background priority), so that searches
    /// answered meanwhile keep their latency.
    async fn reembed_one(&self, current: &Generation, model: &Arc<ClipModel>, id: &str) -> Result<Option<Reembedded>, EngineError> {
        let store = current.store.clone();
        let (wanted, roots, limits, prep_model) = (id.to_string(), self.roots.clone(), self.limits, model.clone());
        let read = crate::background::run(move || -> Result<_, EngineError> {
            let Some(record) = store.get(&wanted)? else { return Ok(None) };
            let gone = |why: String| EngineError::Unreadable { path: record.path.clone(), message: why };
            let file = roots.open(std::path::Path::new(&record.path)).map_err(|e| gone(e.to_string()))?;
            let bytes = read_at_most(&file, limits.max_bytes).map_err(|e| gone(e.to_string()))?;
            if blake3::hash(&bytes).to_hex().as_str() != record.content_hash {
                return Err(gone("the file changed since it was indexed; index it again".into()));
            }
            metrics::image_decode("reembed");
            let pixels = prep_model.pixels(&preprocess::decode(&bytes, &limits)?)?;
            let aliases = store.aliases(&record.id)?;
            Ok(Some((record, pixels, aliases)))
        })
        .await
        .ok_or_else(|| EngineError::Internal("the background thread pool stopped".into()))??;
        let Some((record, pixels, aliases)) = read else { return Ok(None) };
        let vector = self.embed_pixels_waiting(model, pixels).await?;
        Ok(Some(Reembedded { record, vector, aliases }))
    }

    /// Writes re-embedded images into the building generation in one durable write.
    async fn write_built(
        &self,
        next: &Arc<dyn VectorStore>,
        batch: Vec<(String, ImageRecord, Vec<f32>, Vec<String>)>,
    ) -> Vec<(String, FileResult)> {
        if batch.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = batch.iter().map(|(id, ..)| id.clone()).collect();
        let store = next.clone();
        let written = blocking(move || {
            let items: Vec<(ImageRecord, Vec<f32>)> = batch.iter().map(|(_, r, v, _)| (r.clone(), v.clone())).collect();
            store.upsert_many(&items)?;
            for (_, record, _, aliases) in &batch {
                for alias in aliases {
                    store.add_alias(&record.id, alias)?;
                }
            }
            Ok(())
        })
        .await;
        match written {
            Ok(()) => ids.into_iter().map(|id| (id, FileResult::Indexed)).collect(),
            Err(e) => {
                let why = e.to_string();
                ids.into_iter().map(|id| (id, FileResult::Failed(why.clone()))).collect()
            }
        }
    }

    /// Brings the building generation level with the current one: images it lacks or holds
    /// differently are embedded (or, same content, given the current record), images the
    /// current one no longer has are removed. Both are read in id order, a page at a time.
    async fn catch_up(&self, current: &Arc<Generation>, next: &Arc<Generation>, model: &Arc<ClipModel>) -> Result<usize, EngineError> {
        let (from, into) = (current.store.clone(), next.store.clone());
        let missing = blocking(move || {
            let mut missing = Vec::new();
            let (mut have, mut built) = (exported(from.as_ref(), PAGE).peekable(), exported(into.as_ref(), PAGE).peekable());
            // A merge of two id-ordered walks: the current side alone is missing from the build,
            // the build's side alone was deleted since.
            loop {
                // A side that failed to read is taken next, so its error ends the merge.
                let order = match (have.peek(), built.peek()) {
                    (None, None) => break,
                    (Some(_), None) | (Some(Err(_)), _) => std::cmp::Ordering::Less,
                    (None, Some(_)) | (_, Some(Err(_))) => std::cmp::Ordering::Greater,
                    (Some(Ok((a, _))), Some(Ok((b, _)))) => a.id.cmp(&b.id),
                };
                match order {
                    std::cmp::Ordering::Less => missing.push(have.next().expect("peeked")?.0.id),
                    std::cmp::Ordering::Greater => {
                        into.delete(&built.next().expect("peeked")?.0.id)?;
                    }
                    std::cmp::Ordering::Equal => {
                        let (a, _) = have.next().expect("peeked")?;
                        let (b, vector) = built.next().expect("peeked")?;
                        if a != b {
                            if a.content_hash == b.content_hash {
                                into.upsert(&a, &vector)?;
                            } else {
                                missing.push(a.id);
                            }
                        }
                    }
                }
            }
            Ok(missing)
        })
        .await?;
        let count = missing.len();
        for id in missing {
            match self.reembed_one(current, model, &id).await {
                Ok(Some(Reembedded { record, vector, aliases })) => {
                    let failed = self.write_built(&next.store, vec![(id.clone(), record, vector, aliases)]).await;
                    if let Some((_, FileResult::Failed(why))) = failed.first() {
                        return Err(EngineError::Internal(format!("catching up {id}: {why}")));
                    }
                }
                Ok(None) => {}
                // Its file is unreadable now: it cannot be carried over, as in the job.
                Err(e) => tracing::warn!(%id, error = %e, "an image indexed during the re-embed cannot be re-embedded"),
            }
        }
        Ok(count)
    }

    /// Ends the build of job `job_id` as its job ended: a completed one catches up and becomes
    /// current; a cancelled or failed one is dropped. Safe to call again (after a crash, or on
    /// several replicas): the pointer decides who acts.
    pub(crate) async fn finish_build(&self, job_id: &str, state: JobState) -> Result<(), EngineError> {
        let _changing = self.served.changing.lock().await;
        self.finish_build_here(job_id, state).await
    }

    async fn finish_build_here(&self, job_id: &str, state: JobState) -> Result<(), EngineError> {
        let pointer = self.read_pointer().await?;
        let Some(building) = pointer.building.clone().filter(|b| b.job_id == job_id) else { return Ok(()) };
        if state != JobState::Completed {
            return self.abandon_build(&pointer, &building).await;
        }
        if let Some(since) = pointer.switching {
            if OffsetDateTime::now_utc() - since < time::Duration::try_from(SWITCH_ABANDONED).unwrap_or(time::Duration::ZERO) {
                return Ok(()); // Someone is switching right now.
            }
        }
        let (current, next, model) = self.build_parts().await?;
        let caught = self.catch_up(&current, &next, &model).await?;
        tracing::info!(images = caught, "re-embed caught up with changes made during the build");
        // Loaded before writes pause, so the pause stays as short as the last catch-up.
        let serving = self.served_copy(&building.generation, &next).await?;
        // Announce the switch so that every replica pauses its writes, then take in the last ones.
        let announced = Generations { switching: Some(OffsetDateTime::now_utc()), ..pointer.clone() };
        if !self.replace_pointer(&pointer, &announced).await? {
            return Ok(());
        }
        let announced = Generations { serial: pointer.serial + 1, ..announced };
        if self.served.home.describe().backend != "embedded" {
            tokio::time::sleep(SWITCH_SETTLE).await;
        }
        self.served.set_switching_here(true);
        self.served.close_writes().await;
        let switched = self.switch(&announced, &building, current.clone(), (next.clone(), serving), &model).await;
        if switched.is_err() {
            // Let the pointer go back to building, so a later attempt (or a replica) retries.
            let reopened = Generations { switching: None, ..announced.clone() };
            let _ = self.replace_pointer(&announced, &reopened).await;
        }
        self.served.open_writes();
        self.served.set_switching_here(false);
        switched
    }

    /// With writes paused: the last catch-up into the build (`next`), then the pointer names the
    /// new generation current and `serving` (the same store, its model at full strength) answers.
    async fn switch(
        &self,
        announced: &Generations,
        building: &Building,
        current: Arc<Generation>,
        (next, serving): (Arc<Generation>, Arc<Generation>),
        model: &Arc<ClipModel>,
    ) -> Result<(), EngineError> {
        let caught = self.catch_up(&current, &next, model).await?;
        let dropped = announced.previous.clone();
        let switched = Generations {
            current: building.generation.clone(),
            previous: Some(announced.current.clone()),
            building: None,
            switching: None,
            ..announced.clone()
        };
        if !self.replace_pointer(announced, &switched).await? {
            return Err(EngineError::CannotReembed("the index generations changed during the switch".into()));
        }
        self.served.set_current(serving);
        self.served.set_next(None);
        self.served.keep_previous(current);
        metrics::index_size(self.image_count());
        tracing::info!(generation = %building.generation.name, last_changes = caught, "re-embed complete: the new index generation is current");
        if let Some(old) = dropped.filter(|old| old.name != switched.current.name) {
            let home = self.served.home.clone();
            if let Err(e) = blocking(move || Ok(home.drop_generation(&old.name)?)).await {
                tracing::warn!(error = %e, "could not remove the generation before the previous one");
            }
        }
        Ok(())
    }

    /// Drops the generation first, then the pointer's mention of it: a crash in between
    /// leaves a build whose job is over, which the next look at the pointer abandons again.
    async fn abandon_build(&self, pointer: &Generations, building: &Building) -> Result<(), EngineError> {
        self.served.set_next(None);
        let (home, name) = (self.served.home.clone(), building.generation.name.clone());
        blocking(move || Ok(home.drop_generation(&name)?)).await?;
        let cleared = Generations { building: None, switching: None, ..pointer.clone() };
        if self.replace_pointer(pointer, &cleared).await? {
            tracing::info!(generation = %building.generation.name, "re-embed abandoned; its generation is removed");
        }
        Ok(())
    }

    /// Makes the previous generation current again (and the current one previous). Its model
    /// is loaded first; searches are answered by the current one until it is ready.
    pub async fn rollback(&self) -> Result<GenerationRef, EngineError> {
        let _changing = self.served.changing.lock().await;
        let pointer = self.read_pointer().await?;
        if let Some(b) = &pointer.building {
            return Err(EngineError::ReembedRunning { generation: b.generation.name.clone(), job_id: b.job_id.clone() });
        }
        let Some(previous) = pointer.previous.clone() else {
            return Err(EngineError::CannotReembed("there is no previous index generation to roll back to".into()));
        };
        let generation = Arc::new(self.load_generation(&previous, false).await?);
        generation.embedder.wait_loaded().await?;
        generation.model()?;
        let rolled = Generations { current: previous.clone(), previous: Some(pointer.current.clone()), ..pointer.clone() };
        if !self.replace_pointer(&pointer, &rolled).await? {
            return Err(EngineError::CannotReembed("the index generations changed meanwhile; try again".into()));
        }
        let _writing = self.served.writable().await;
        let old = self.current();
        self.served.set_current(generation);
        self.served.keep_previous(old);
        metrics::index_size(self.image_count());
        tracing::info!(generation = %previous.name, "rolled back to the previous index generation");
        Ok(previous)
    }

    /// A generation named by the pointer, with its store (kept open from before, if it is the
    /// previous one) and its model loading.
    /// The generation being built, loaded here if the pointer names one this process has not
    /// loaded yet. The caller holds [`Served::changing`](super::generations::Served).
    async fn load_building(&self) -> Result<Arc<Generation>, EngineError> {
        if let Some(next) = self.building() {
            return Ok(next);
        }
        let pointer = self.read_pointer().await?;
        let building = pointer.building.ok_or_else(|| EngineError::CannotReembed("no index generation is being built".into()))?;
        let generation = Arc::new(self.load_generation(&building.generation, true).await?);
        self.served.set_next(Some(generation.clone()));
        tracing::info!(generation = %building.generation.name, job = %building.job_id, "following a re-embed in progress");
        Ok(generation)
    }

    /// Loads a generation the pointer names; a `building` one's model gets one thread less
    /// than the served model's, so searches keep a core while it embeds.
    async fn load_generation(&self, named: &GenerationRef, building: bool) -> Result<Generation, EngineError> {
        let options = self.served.options_for(named);
        let store = match self.served.previous_store(&named.name) {
            Some(store) => store,
            None => {
                let (home, name) = (self.served.home.clone(), named.name.clone());
                blocking(move || Ok(gens::open_store(&home, &name)?)).await?
            }
        };
        // Its model's state reaches `/metrics` once it is served.
        Ok(if building { Generation::beside(&named.name, options, store) } else { Generation::replacing(&named.name, options, store) })
    }

    /// Keeps this process in step with the pointer (another replica's build, switch or
    /// rollback, or a build a crash interrupted); called every [`super::generations::FOLLOW_EVERY`].
    pub(crate) async fn follow_pointer(&self, jobs: &Arc<dyn JobStore>) -> Result<(), EngineError> {
        // This process is changing generations itself right now: look again next time.
        let Ok(_changing) = self.served.changing.try_lock() else { return Ok(()) };
        let pointer = self.read_pointer().await?;
        if pointer.switching.is_some() && !self.served.switching_here() {
            // Another replica takes in the last changes: writes here wait until it has switched.
            self.served.close_writes().await;
            let abandoned = pointer.switching.is_some_and(|since| {
                OffsetDateTime::now_utc() - since > time::Duration::try_from(SWITCH_ABANDONED).unwrap_or(time::Duration::MAX)
            });
            if !abandoned {
                return Ok(());
            }
        }
        let followed = self.follow(&pointer, jobs).await;
        // Writes open again only once the generation they go to is the one the pointer names.
        if !self.served.switching_here() {
            self.served.open_writes();
        }
        followed
    }

    async fn follow(&self, pointer: &Generations, jobs: &Arc<dyn JobStore>) -> Result<(), EngineError> {
        if pointer.current.name != self.current().name {
            let generation = match self.building().filter(|next| next.name == pointer.current.name) {
                Some(next) => self.served_copy(&pointer.current, &next).await?,
                None => Arc::new(self.load_generation(&pointer.current, false).await?),
            };
            generation.embedder.wait_loaded().await?;
            // Not behind the write gate: it may be closed by this very follower. A write staged
            // with the old generation is refused at commit and embedded again.
            let old = self.current();
            self.served.set_current(generation);
            self.served.keep_previous(old);
            if self.building().is_some_and(|next| next.name == pointer.current.name) {
                self.served.set_next(None);
            }
            tracing::info!(generation = %pointer.current.name, "following the index generation another replica made current");
        }
        match &pointer.building {
            Some(b) if self.building().is_none_or(|next| next.name != b.generation.name) => {
                self.served.set_next(None);
                self.load_building().await?;
            }
            Some(b) => {
                // A build whose job ended but whose switch did not happen (the process that
                // finished it died, or a switch was abandoned): finish it here. A job that is
                // gone (deleted) leaves nothing to build.
                let (jobs, id) = (jobs.clone(), b.job_id.clone());
                let job = blocking(move || Ok(jobs.job(&id)?)).await?;
                match job.map(|j| j.state) {
                    Some(state) if state.is_finished() => self.finish_build_here(&b.job_id, state).await?,
                    Some(_) => {}
                    None => self.finish_build_here(&b.job_id, JobState::Cancelled).await?,
                }
            }
            None if self.building().is_some() => self.served.set_next(None),
            None => {}
        }
        Ok(())
    }

    async fn read_pointer(&self) -> Result<Generations, EngineError> {
        let home = self.served.home.clone();
        blocking(move || Ok(gens::read_pointer(home.as_ref())?)).await
    }

    async fn replace_pointer(&self, read: &Generations, next: &Generations) -> Result<bool, EngineError> {
        let (home, read, next) = (self.served.home.clone(), read.clone(), next.clone());
        blocking(move || Ok(gens::replace_pointer(home.as_ref(), &read, &next)?)).await
    }

    /// The re-embed in progress, for status pages.
    pub fn build_info(&self) -> Option<BuildInfo> {
        self.served.pointer().ok().and_then(|p| p.building.as_ref().map(BuildInfo::from))
    }

    /// The pointer as stored, for status pages.
    pub fn generations(&self) -> Result<Generations, EngineError> {
        Ok(self.served.pointer()?)
    }
}
