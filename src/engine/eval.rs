//! Retrieval quality on captioned photos (`visionquery eval`): embeds a folder of images and a
//! captions file (image name, tab, caption: the Flickr8k/Flickr30k/COCO-style TSV) with the
//! loaded model, then scores text->image and image->text retrieval the way `/search` ranks:
//! dot products of unit vectors, best first, ties broken by image id. Reads files and runs the
//! model; never touches the index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use super::{blocking, image_id, EngineError};
use crate::embed::{preprocess, ClipModel, DecodeLimits};
use crate::store::matrix::Matrix;

/// Inputs handed to the model at once: enough to fill its batches, far below its queue bound.
const IN_FLIGHT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read the captions file {path}: {message}")]
    CaptionsUnreadable { path: String, message: String },
    #[error("line {line} of {path} is not `image<TAB>caption`")]
    CaptionsMalformed { path: String, line: usize },
    #[error("no caption names an image that could be read in {images}")]
    NothingToEvaluate { images: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One caption: the image file it describes (relative to the images folder) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    pub image: String,
    pub text: String,
}

/// Reads `image<TAB>caption` lines. A Flickr8k token suffix (`photo.jpg#3`) is dropped, blank
/// lines and `#` comments are skipped, and so is a header line naming the columns.
pub fn parse_captions(text: &str, path: &Path) -> Result<Vec<Caption>, EvalError> {
    let mut captions = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((image, caption)) = line.split_once('\t') else {
            return Err(EvalError::CaptionsMalformed { path: path.display().to_string(), line: number + 1 });
        };
        let image = image.trim();
        let image = image.rsplit_once('#').filter(|(_, n)| n.chars().all(|c| c.is_ascii_digit())).map_or(image, |(name, _)| name);
        if captions.is_empty() && number == 0 && matches!(image.to_ascii_lowercase().as_str(), "image" | "image_name" | "filename" | "file")
        {
            continue;
        }
        let caption = caption.trim();
        if image.is_empty() || caption.is_empty() {
            return Err(EvalError::CaptionsMalformed { path: path.display().to_string(), line: number + 1 });
        }
        captions.push(Caption { image: image.to_string(), text: caption.to_string() });
    }
    Ok(captions)
}

/// Retrieval scores in one direction. Ranks start at 1 (the best); recalls are fractions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalScores {
    #[serde(rename = "recall@1")]
    pub recall_at_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_at_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_at_10: f64,
    pub median_rank: f64,
    pub mrr: f64,
    /// Queries scored: captions (text->image) or captioned images (image->text).
    pub queries: usize,
}

impl RetrievalScores {
    fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len().max(1) as f64;
        let recall = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
        let mut sorted = ranks.to_vec();
        sorted.sort_unstable();
        let median_rank = match sorted.len() {
            0 => 0.0,
            len if len % 2 == 1 => sorted[len / 2] as f64,
            len => (sorted[len / 2 - 1] + sorted[len / 2]) as f64 / 2.0,
        };
        Self {
            recall_at_1: recall(1),
            recall_at_5: recall(5),
            recall_at_10: recall(10),
            median_rank,
            mrr: ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n,
            queries: ranks.len(),
        }
    }
}

/// What `eval` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub text_to_image: RetrievalScores,
    pub image_to_text: RetrievalScores,
    pub images: usize,
    pub captions: usize,
}

/// The embeddings an evaluation ranks, kept so they can be checked by another implementation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalEmbeddings {
    /// Image keys in the order of `image_vectors`: the image id (as `/search` breaks ties by it),
    /// then `/` and the file name (two copies of one picture share an id).
    pub image_keys: Vec<String>,
    pub image_vectors: Vec<Vec<f32>>,
    /// For each caption, the index of its image in `image_keys`.
    pub caption_images: Vec<usize>,
    pub caption_vectors: Vec<Vec<f32>>,
}

/// Ranks every caption's image among all images, and every captioned image's best caption among
/// all captions. Ties: images by key (so by id, as `/search`), captions by their order in the file.
pub fn evaluate(set: &EvalEmbeddings) -> EvalReport {
    let dim = set.image_vectors.first().or(set.caption_vectors.first()).map_or(0, Vec::len);
    let mut images: Matrix<()> = Matrix::new(dim);
    for (key, vector) in set.image_keys.iter().zip(&set.image_vectors) {
        images.upsert(key, vector);
    }
    let text_to_image: Vec<usize> = set
        .caption_vectors
        .iter()
        .zip(&set.caption_images)
        .map(|(vector, &own)| rank_of(&images.scores(vector), own, |a, b| set.image_keys[a].cmp(&set.image_keys[b])))
        .collect();

    // Caption keys are their zero-padded positions, so the matrix keeps file order for ties.
    let mut captions: Matrix<()> = Matrix::new(dim);
    for (i, vector) in set.caption_vectors.iter().enumerate() {
        captions.upsert(&format!("{i:012}"), vector);
    }
    let mut own_captions: Vec<Vec<usize>> = vec![Vec::new(); set.image_keys.len()];
    for (caption, &image) in set.caption_images.iter().enumerate() {
        own_captions[image].push(caption);
    }
    let image_to_text: Vec<usize> = own_captions
        .iter()
        .zip(&set.image_vectors)
        .filter(|(own, _)| !own.is_empty())
        .map(|(own, vector)| {
            let scores = captions.scores(vector);
            own.iter().map(|&c| rank_of(&scores, c, |a, b| a.cmp(&b))).min().expect("filtered to captioned images")
        })
        .collect();

    EvalReport {
        text_to_image: RetrievalScores::from_ranks(&text_to_image),
        image_to_text: RetrievalScores::from_ranks(&image_to_text),
        images: set.image_keys.len(),
        captions: set.caption_vectors.len(),
    }
}

/// 1 + the number of candidates ranked before `target`: a higher score, or an equal one and an
/// earlier tie-break.
fn rank_of(scores: &[f32], target: usize, tie_break: impl Fn(usize, usize) -> std::cmp::Ordering) -> usize {
    let own = scores[target];
    1 + scores
        .iter()
        .enumerate()
        .filter(|&(i, s)| i != target && (s.total_cmp(&own).is_gt() || (s.total_cmp(&own).is_eq() && tie_break(i, target).is_lt())))
        .count()
}

/// Images and captions that could not take part, with the reason, for the report.
#[derive(Debug, Default)]
pub struct Skipped {
    /// Image files that failed to read or decode.
    pub images: Vec<(String, String)>,
    /// Captions naming an image that is not in the folder (or failed).
    pub captions: usize,
}

/// Embeds the captioned images of `images_dir` and all their captions with `model`.
pub async fn embed_captioned(
    model: Arc<ClipModel>,
    images_dir: &Path,
    captions: Vec<Caption>,
    limits: DecodeLimits,
) -> Result<(EvalEmbeddings, Skipped), EvalError> {
    let mut names: Vec<String> = captions.iter().map(|c| c.image.clone()).collect();
    names.sort();
    names.dedup();

    let embedded: Vec<(String, Result<IdAndVector, String>)> = stream::iter(names)
        .map(|name| {
            let (model, path) = (model.clone(), images_dir.join(&name));
            async move {
                let outcome = embed_image_file(model, path, limits).await;
                Ok::<_, EvalError>((name, outcome))
            }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;

    let mut skipped = Skipped::default();
    let mut set =
        EvalEmbeddings { image_keys: Vec::new(), image_vectors: Vec::new(), caption_images: Vec::new(), caption_vectors: Vec::new() };
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (name, outcome) in embedded {
        match outcome {
            Ok((id, vector)) => {
                index_of.insert(name.clone(), set.image_keys.len());
                set.image_keys.push(format!("{id}/{name}"));
                set.image_vectors.push(vector);
            }
            Err(why) => skipped.images.push((name, why)),
        }
    }
    let kept: Vec<(usize, String)> = captions
        .into_iter()
        .filter_map(|c| {
            let image = index_of.get(&c.image).copied();
            skipped.captions += usize::from(image.is_none());
            Some((image?, c.text))
        })
        .collect();
    if kept.is_empty() {
        return Err(EvalError::NothingToEvaluate { images: images_dir.display().to_string() });
    }
    set.caption_vectors = stream::iter(kept.iter().map(|(_, text)| text.clone()))
        .map(|text| {
            let model = model.clone();
            async move { model.embed_text(&text).await.map(|e| e.vector).map_err(|e| EvalError::Engine(e.into())) }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    set.caption_images = kept.into_iter().map(|(image, _)| image).collect();
    Ok((set, skipped))
}

/// An image's id (as indexing would give it) and unit embedding.
type IdAndVector = (String, Vec<f32>);

/// The image's id and embedding, or why it cannot be used.
async fn embed_image_file(model: Arc<ClipModel>, path: PathBuf, limits: DecodeLimits) -> Result<IdAndVector, String> {
    let prep_model = model.clone();
    let prepared = blocking(move || {
        let bytes =
            fs_err::read(&path).map_err(|e| EngineError::Unreadable { path: path.display().to_string(), message: e.to_string() })?;
        let id = image_id(&blake3::hash(&bytes).to_hex());
        let decoded = preprocess::decode(&bytes, &limits).map_err(EngineError::from)?;
        Ok((id, prep_model.pixels(&decoded).map_err(EngineError::from)?))
    })
    .await
    .map_err(|e| e.to_string())?;
    let (id, pixels) = prepared;
    let vector = model.embed_pixels(pixels).await.map_err(|e| e.to_string())?;
    Ok((id, vector))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn captions_parse_flickr_tokens_headers_and_comments() {
        let text = "image\tcaption\n# note\na.jpg#0\tA dog .\r\n\nsub/b.png\tTwo cats\n";
        let parsed = parse_captions(text, Path::new("c.tsv")).unwrap();
        assert_eq!(
            parsed,
            vec![Caption { image: "a.jpg".into(), text: "A dog .".into() }, Caption { image: "sub/b.png".into(), text: "Two cats".into() }]
        );
        assert!(matches!(parse_captions("a.jpg no tab\n", Path::new("c.tsv")), Err(EvalError::CaptionsMalformed { line: 1, .. })));
    }

    #[test]
    fn ranks_count_better_scores_and_break_ties_by_image_key() {
        // Images: "b" and "a" point the same way, so a caption aimed at them ties; "c" is far.
        let set = EvalEmbeddings {
            image_keys: vec!["b/2.jpg".into(), "a/1.jpg".into(), "c/3.jpg".into()],
            image_vectors: vec![unit(&[1.0, 0.0]), unit(&[1.0, 0.0]), unit(&[0.0, 1.0])],
            caption_images: vec![0, 1, 2, 2],
            caption_vectors: vec![unit(&[1.0, 0.1]), unit(&[1.0, 0.1]), unit(&[0.2, 1.0]), unit(&[1.0, 0.0])],
        };
        let report = evaluate(&set);
        // Caption 0 wants "b", which ties with "a" and loses the tie: rank 2. Caption 1 wants "a":
        // rank 1. Caption 2 wants "c": rank 1. Caption 3 wants "c" but points at a/b: rank 3.
        assert_eq!(report.text_to_image.recall_at_1, 0.5);
        assert_eq!(report.text_to_image.median_rank, 1.5);
        assert!((report.text_to_image.mrr - (0.5 + 1.0 + 1.0 + 1.0 / 3.0) / 4.0).abs() < 1e-12);
        // Image->text: caption 3 points exactly at "a"/"b", so it outranks their own captions.
        // "c" finds its caption 2 first (rank 1); "b" finds caption 3, then its caption 0 (rank 2);
        // "a" finds 3, then 0 and 1 tied, its caption 1 losing the tie by file order (rank 3).
        assert_eq!(report.image_to_text.queries, 3);
        assert_eq!(report.image_to_text.median_rank, 2.0);
        assert!((report.image_to_text.recall_at_1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((report.image_to_text.mrr - (1.0 + 0.5 + 1.0 / 3.0) / 3.0).abs() < 1e-12);
    }
}
