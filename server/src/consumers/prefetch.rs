//! Rendering a consumer's next fragment while the current one is delivered. Decoding is the
//! slow part of a consumer; with one fragment in flight ahead of delivery, the decode pool works
//! on fragment k+1 while fragment k's batches are posted, and a consumer keeps both cores busy.
//! The lookahead is only a guess at what the consumer will select next: when the real selection
//! differs (a lag-policy skip, a resume inside a fragment) the guess is thrown away.

use framelog_store::StreamHandle;
use tokio::task::JoinHandle;

use super::ConsumersCtx;
use super::render::{Rendered, render};
use super::select::{Picked, select_video};
use super::spec::ConsumerSpec;
use crate::kvs::VideoStream;

/// The frames a lookahead selected, and their pictures.
type Guess = (Vec<Picked>, Vec<Option<Rendered>>);

/// One fragment being rendered ahead; dropping it abandons the work.
pub struct Prefetch {
    seq: u64,
    task: JoinHandle<Option<Guess>>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Prefetch {
    /// Starts rendering fragment `seq` as it would be selected after a frame at `last_frame_ms`.
    pub fn start(
        ctx: &ConsumersCtx,
        handle: &StreamHandle,
        spec: &ConsumerSpec,
        seq: u64,
        last_frame_ms: Option<u64>,
    ) -> Self {
        let (ctx, handle, spec) = (ctx.clone(), handle.clone(), spec.clone());
        let task = tokio::spawn(async move {
            let engine = ctx.video.engine.clone();
            let read = move || VideoStream::new(handle).fragment(&engine, seq);
            let stored = tokio::task::spawn_blocking(read).await.ok()?.ok()??;
            let (video, picked) = select_video(&stored.record, &spec.selection, last_frame_ms)?;
            let rendered = render(&ctx, &spec, &stored.record, &stored.payload, &video, &picked).await;
            Some((picked, rendered))
        });
        Prefetch { seq, task }
    }

    /// The pictures, when this lookahead rendered exactly `picked` of fragment `seq`.
    pub async fn take(mut self, seq: u64, picked: &[Picked]) -> Option<Vec<Option<Rendered>>> {
        if self.seq != seq {
            return None;
        }
        let (guessed, rendered) = (&mut self.task).await.ok()??;
        (guessed == picked).then_some(rendered)
    }
}
