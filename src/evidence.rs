//! Evidence on disk: the artifact files a protocol names, the zipped bundle with its manifest, and
//! the check of prerequisite artifacts before a phase starts.
//!
//! Everything here is blocking `std::fs` I/O on small files; the driver calls it from
//! `spawn_blocking`. Writes are atomic (temporary file, fsync, rename), so an auditor never finds a
//! half-written report after a crash, and a reader never sees a torn file while raybot rewrites it.
//!
//! Paths given to [`EvidenceWriter`] are relative to the release's artifacts directory and may not
//! escape it: the names come from protocol data and, through release ids, indirectly from chat.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::reports::{BundleReport, ContentResult, FileDigest, InputStatus};
use crate::protocol::model::ContentCheck;

/// Writes the evidence of one release below its artifacts directory (e.g. `.artifacts/<release-id>`).
#[derive(Debug, Clone)]
pub struct EvidenceWriter {
    root: PathBuf,
}

/// The JSON manifest written next to (and into) a bundle.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    release: &'a str,
    protocol: &'a str,
    generated_at: &'a str,
    files: &'a [FileDigest],
    missing: &'a [String],
    /// Share of the requested files that were found, 1.0 when nothing was requested.
    completeness: f64,
}

impl EvidenceWriter {
    /// A writer for the artifacts directory `root`; nothing is created until something is written.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        EvidenceWriter { root: root.into() }
    }

    /// The release's artifacts directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `rel` (e.g. `pre-deployment/intake-validation-report.json`) atomically: a temporary
    /// file in the same folder is written, fsynced and renamed over the target, so readers see the
    /// old or the new contents, never a mix. Missing folders are created.
    ///
    /// Refuses (with [`io::ErrorKind::InvalidInput`]) paths that are empty, absolute, or contain
    /// `..` or backslashes, so nothing can be written outside [`root`](Self::root).
    pub fn write(&self, rel: &str, contents: &[u8]) -> io::Result<FileDigest> {
        let rel = normalize(rel)?;
        let target = self.root.join(&rel);
        write_atomic(&target, |file| io::Write::write_all(file, contents))?;
        Ok(FileDigest { path: rel, sha256: hex::encode(Sha256::digest(contents)), bytes: contents.len() as u64 })
    }

    /// Zips `files` (paths relative to [`root`](Self::root)) into `zip_rel`, each stored under its
    /// relative path, deflated, with a fixed timestamp so the same evidence always gives the same
    /// zip (and the same SHA-256).
    ///
    /// When `manifest_rel` is given, a JSON manifest is written there first and added to the zip
    /// last: `{"release", "protocol", "generated_at", "files": [{"path", "sha256", "bytes"}],
    /// "missing": [..], "completeness": found / asked}`. The manifest cannot list its own hash; the
    /// returned report does.
    ///
    /// Files that do not exist are listed in `missing` rather than failing the bundle: an
    /// incomplete bundle is still evidence, and the quality gate decides what incompleteness means.
    /// Duplicates, and the zip or manifest themselves, are skipped. Any other I/O error fails, as
    /// does a file that changes between being hashed for the manifest and being zipped.
    ///
    /// The report's `files` are the zip's entries in order (the manifest last, when written).
    pub fn bundle(
        &self,
        zip_rel: &str,
        files: &[String],
        manifest_rel: Option<&str>,
        release: &str,
        protocol: &str,
        generated_at: &str,
    ) -> io::Result<BundleReport> {
        let zip_rel = normalize(zip_rel)?;
        let manifest_rel = manifest_rel.map(normalize).transpose()?;

        let mut asked = Vec::new();
        let mut seen = HashSet::new();
        for file in files {
            let rel = normalize(file)?;
            if rel == zip_rel || manifest_rel.as_ref() == Some(&rel) {
                continue;
            }
            if seen.insert(rel.clone()) {
                asked.push(rel);
            }
        }

        let mut entries = Vec::new();
        let mut missing = Vec::new();
        for rel in &asked {
            let path = self.root.join(rel);
            match digest_file(&path) {
                Ok((sha256, bytes)) => entries.push(FileDigest { path: rel.clone(), sha256, bytes }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(rel.clone()),
                Err(e) => return Err(with_path(&path, e)),
            }
        }

        if let Some(manifest_rel) = &manifest_rel {
            let completeness = if asked.is_empty() { 1.0 } else { entries.len() as f64 / asked.len() as f64 };
            let manifest =
                Manifest { release, protocol, generated_at, files: &entries, missing: &missing, completeness };
            let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
            let digest = self.write(manifest_rel, &json)?;
            entries.push(digest);
        }

        let zip_path = self.root.join(&zip_rel);
        write_atomic(&zip_path, |file| {
            let mut zip = zip::ZipWriter::new(file);
            let base = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(0o644);
            for entry in &entries {
                let path = self.root.join(&entry.path);
                let options = base.large_file(entry.bytes >= u64::from(u32::MAX));
                zip.start_file(entry.path.as_str(), options)?;
                let mut source = HashingReader::new(File::open(&path).map_err(|e| with_path(&path, e))?);
                io::copy(&mut source, &mut zip).map_err(|e| with_path(&path, e))?;
                if source.finish() != entry.sha256 {
                    return Err(io::Error::other(format!(
                        "{} changed while the bundle was being written; bundle again",
                        path.display()
                    )));
                }
            }
            zip.finish()?;
            Ok(())
        })?;
        let (zip_sha256, _) = digest_file(&zip_path).map_err(|e| with_path(&zip_path, e))?;

        Ok(BundleReport { zip: zip_rel, zip_sha256, files: entries, missing })
    }

    /// SHA-256 (hex) of `rel`, or `None` when it does not exist — how an auditor re-checks a
    /// digest recorded in the manifest or the event log.
    pub fn sha256_of(&self, rel: &str) -> io::Result<Option<String>> {
        let path = self.root.join(normalize(rel)?);
        match digest_file(&path) {
            Ok((sha, _)) => Ok(Some(sha)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(with_path(&path, e)),
        }
    }
}

/// One prerequisite artifact to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputCheck {
    /// The artifact's name as the protocol lists it: a path relative to `dir` (absolute paths and
    /// `..` are allowed here, since this comes from configuration and is only read). Any
    /// component may contain `*`, which matches any run of characters within that one directory
    /// level (never `/`, and not a leading `.` unless the pattern starts with one).
    pub name: String,
    /// The directory `name` is relative to.
    pub dir: PathBuf,
    /// Whether the protocol makes this artifact mandatory (reported back, not enforced here).
    pub required: bool,
    /// Files whose newest match was modified longer ago than this are `expired`.
    pub max_age: Option<Duration>,
    /// Fields the newest match must carry (a JSON member of the zip, or the JSON file itself).
    pub expects: Vec<ContentCheck>,
}

/// Checks prerequisite artifacts on disk, one [`InputStatus`] per item, in order.
///
/// Matches are listed newest first (by modification time, then by path), so the "first match"
/// whose SHA-256 is reported is the most recent artifact. The status is, by priority:
/// `missing` (no file matches), `unreadable` (a match or its folder cannot be read), `corrupt`
/// (a `.zip` match is not a readable zip archive), `content check failed` (the newest match does
/// not carry a field it is expected to), `expired` (the newest match is older than `max_age`),
/// otherwise `present`. What each content expectation read is reported whatever the status.
pub fn check_inputs(items: &[InputCheck]) -> Vec<InputStatus> {
    items.iter().map(check_input).collect()
}

fn check_input(item: &InputCheck) -> InputStatus {
    let status = |status: &str, found: Vec<String>, sha256: Option<String>| InputStatus {
        name: item.name.clone(),
        found,
        status: status.to_owned(),
        required: item.required,
        sha256,
        content: Vec::new(),
    };

    let matches = match expand(&item.dir, &item.name) {
        Ok(matches) => matches,
        Err(_) => return status("unreadable", Vec::new(), None),
    };
    let mut dated = Vec::with_capacity(matches.len());
    let mut unreadable = false;
    for path in matches {
        let modified = fs::metadata(&path).and_then(|m| m.modified());
        if modified.is_err() {
            unreadable = true;
        }
        dated.push((modified.ok(), path));
    }
    // Newest first; files without a readable mtime last; ties by path.
    dated.sort_by(|(ta, pa), (tb, pb)| tb.cmp(ta).then_with(|| pa.cmp(pb)));
    let found: Vec<String> = dated.iter().map(|(_, p)| p.display().to_string()).collect();
    let Some((newest_mtime, first)) = dated.first() else {
        return status("missing", found, None);
    };

    let sha256 = match digest_file(first) {
        Ok((sha, _)) => Some(sha),
        Err(_) => {
            unreadable = true;
            None
        }
    };
    let mut corrupt = false;
    for (_, path) in &dated {
        if !is_zip(path) {
            continue;
        }
        match File::open(path) {
            Ok(file) => {
                if zip::ZipArchive::new(file).is_err() {
                    corrupt = true;
                }
            }
            Err(_) => unreadable = true,
        }
    }
    let expired = match (item.max_age, newest_mtime) {
        (Some(max_age), Some(mtime)) => SystemTime::now().duration_since(*mtime).is_ok_and(|age| age > max_age),
        _ => false,
    };

    let content: Vec<ContentResult> = item.expects.iter().map(|e| read_expectation(first, e)).collect();
    let verdict = if unreadable {
        "unreadable"
    } else if corrupt {
        "corrupt"
    } else if content.iter().any(|c| !c.ok) {
        "content check failed"
    } else if expired {
        "expired"
    } else {
        "present"
    };
    InputStatus { content, ..status(verdict, found, sha256) }
}

/// The largest JSON document read from an artifact for a content check.
const MAX_CONTENT_BYTES: u64 = 4 << 20;

/// Reads expectation `e` from artifact `path`: the JSON member `e.file` of a zip, or the file
/// itself; then the (dotted) field, compared with `e.equals` or required to be non-empty.
fn read_expectation(path: &Path, e: &ContentCheck) -> ContentResult {
    let file = e.file.clone().unwrap_or_else(|| path.file_name().unwrap_or_default().to_string_lossy().into_owned());
    let result = |found: Option<serde_json::Value>, error: Option<String>| {
        let ok = match (&found, &e.equals) {
            (Some(v), Some(want)) => v == want,
            (Some(v), None) => {
                !matches!(v, serde_json::Value::Null | serde_json::Value::Bool(false))
                    && v.as_str() != Some("")
                    && v.as_array().is_none_or(|a| !a.is_empty())
                    && v.as_object().is_none_or(|o| !o.is_empty())
            }
            (None, _) => false,
        };
        ContentResult {
            file: file.clone(),
            field: e.field.clone(),
            expected: e.equals.clone(),
            found,
            error,
            ok,
            proves: e.proves.clone(),
        }
    };
    let text = match json_text(path, e.file.as_deref()) {
        Ok(t) => t,
        Err(err) => return result(None, Some(err)),
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(err) => return result(None, Some(format!("{file} is not JSON: {err}"))),
    };
    let found = e.field.split('.').try_fold(&doc, |v, key| v.get(key));
    match found {
        Some(v) => result(Some(v.clone()), None),
        None => result(None, Some(format!("{file} has no field `{}`", e.field))),
    }
}

/// The text of `member` inside the zip at `path`, or of the file at `path` when `member` is `None`
/// (at most [`MAX_CONTENT_BYTES`]); the error says what could not be read.
fn json_text(path: &Path, member: Option<&str>) -> Result<String, String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut text = String::new();
    let read = match member {
        None => File::open(path).and_then(|f| f.take(MAX_CONTENT_BYTES).read_to_string(&mut text)),
        Some(m) => {
            let file = File::open(path).map_err(|err| format!("{name}: {err}"))?;
            let mut zip = zip::ZipArchive::new(file).map_err(|err| format!("{name} is not a readable zip: {err}"))?;
            let entry = zip.by_name(m).map_err(|_| format!("{m} not in {name}"))?;
            entry.take(MAX_CONTENT_BYTES).read_to_string(&mut text)
        }
    };
    read.map(|_| text).map_err(|err| format!("{}: {err}", member.unwrap_or(&name)))
}

fn is_zip(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// Files matching `pattern` below `dir`, each `*` component expanded over one directory level.
/// A folder that does not exist (or is not a folder) simply matches nothing.
fn expand(dir: &Path, pattern: &str) -> io::Result<Vec<PathBuf>> {
    let mut candidates = vec![dir.to_path_buf()];
    for component in Path::new(pattern).components() {
        let glob = match component {
            Component::Normal(part) => part.to_str().filter(|p| p.contains('*')),
            _ => None,
        };
        let Some(glob) = glob else {
            for candidate in &mut candidates {
                candidate.push(component);
            }
            continue;
        };
        let mut next = Vec::new();
        for base in &candidates {
            let listing = match fs::read_dir(base) {
                Ok(listing) => listing,
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            for entry in listing {
                let name = entry?.file_name();
                // Names that are not UTF-8 cannot match a pattern from the protocol files.
                if name.to_str().is_some_and(|name| glob_match(glob, name)) {
                    next.push(base.join(&name));
                }
            }
        }
        candidates = next;
    }
    candidates.retain(|path| path.is_file());
    Ok(candidates)
}

/// Shell-style `*` matching within one path component: `*` matches any run of characters, every
/// other character matches itself. Like a shell, a leading `*` does not match hidden names
/// (which is also how raybot's own temporary files stay out of globs).
fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen and the name index it was tried against.
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, tried)) = backtrack {
            // Let the last `*` swallow one more character and try again.
            pi = star + 1;
            ni = tried + 1;
            backtrack = Some((star, tried + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks that `rel` stays inside the root and returns it with `/` separators and without `.`
/// components.
fn normalize(rel: &str) -> io::Result<String> {
    let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("evidence path {rel:?} {why}"));
    if rel.contains('\\') {
        // Harmless on Unix, but a zip entry with `..\` escapes the folder when unzipped on Windows.
        return Err(refuse("must use `/`, not `\\`"));
    }
    let mut parts = Vec::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => return Err(refuse("is not valid UTF-8")),
            },
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("must not contain `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("must be relative to the artifacts directory"));
            }
        }
    }
    if parts.is_empty() {
        return Err(refuse("names no file"));
    }
    Ok(parts.join("/"))
}

/// Writes `target` through `fill` into a temporary sibling, fsyncs it, renames it into place and
/// (best effort) fsyncs the folder so the rename itself survives a crash.
fn write_atomic<T>(target: &Path, fill: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", target.display())));
    };
    fs::create_dir_all(dir).map_err(|e| with_path(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let value = fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, target)?;
        Ok(value)
    })();
    match result {
        Ok(value) => {
            // Directories cannot be opened for fsync on every platform; the data itself is
            // already durable, only the rename might be lost, so this is not worth failing for.
            if let Ok(folder) = File::open(dir) {
                let _ = folder.sync_all();
            }
            Ok(value)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(with_path(target, e))
        }
    }
}

/// SHA-256 (hex) and size of a file, streamed.
fn digest_file(path: &Path) -> io::Result<(String, u64)> {
    let mut reader = HashingReader::new(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    let bytes = reader.bytes;
    Ok((reader.finish(), bytes))
}

/// Puts the path in an I/O error's message, keeping its kind (`NotFound` stays `NotFound`).
fn with_path(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), bytes: 0 }
    }

    fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn writer() -> (tempfile::TempDir, EvidenceWriter) {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = EvidenceWriter::new(dir.path().join("rel-1"));
        (dir, writer)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_creates_folders_and_reports_the_digest() {
        let (_dir, w) = writer();
        let body = br#"{"ok":true}"#;
        let digest = w.write("./pre-deployment//intake-validation-report.json", body).expect("write");
        assert_eq!(
            digest,
            FileDigest {
                path: "pre-deployment/intake-validation-report.json".into(),
                sha256: sha(body),
                bytes: body.len() as u64,
            }
        );
        let on_disk = w.root().join("pre-deployment/intake-validation-report.json");
        assert_eq!(fs::read(&on_disk).expect("read"), body);

        // Overwriting replaces the contents and leaves no temporary file behind.
        w.write("pre-deployment/intake-validation-report.json", b"v2").expect("rewrite");
        assert_eq!(fs::read(&on_disk).expect("read"), b"v2");
        assert_eq!(listing(&w.root().join("pre-deployment")), ["intake-validation-report.json"]);
        assert_eq!(w.sha256_of("pre-deployment/intake-validation-report.json").expect("sha"), Some(sha(b"v2")));
        assert_eq!(w.sha256_of("nope.json").expect("sha"), None);
    }

    #[test]
    fn write_refuses_paths_outside_the_root() {
        let (dir, w) = writer();
        for bad in ["../escape.json", "a/../../escape.json", "a/..", "/etc/raybot-escape", "", ".", "..\\escape.json"] {
            let err = w.write(bad, b"x").expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}: {err}");
            assert!(err.to_string().contains("evidence path"), "{err}");
            assert!(w.sha256_of(bad).is_err(), "{bad}");
        }
        assert!(!dir.path().join("escape.json").exists());
        assert!(!w.root().exists(), "nothing was written at all");
    }

    fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
        let mut archive = zip::ZipArchive::new(File::open(path).expect("open zip")).expect("zip");
        (0..archive.len())
            .map(|i| {
                let mut entry = archive.by_index(i).expect("entry");
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).expect("read entry");
                (entry.name().to_owned(), bytes)
            })
            .collect()
    }

    #[test]
    fn bundle_lists_missing_files_and_zips_the_rest_with_a_manifest() {
        let (_dir, w) = writer();
        let a = b"staging results\n".repeat(100);
        let b = br#"{"approved":true}"#.to_vec();
        w.write("pre-deployment/staging-test-results.json", &a).expect("a");
        w.write("approvals.json", &b).expect("b");
        let asked: Vec<String> = [
            "pre-deployment/staging-test-results.json",
            "pre-deployment/security-scan.json",
            "approvals.json",
            "./approvals.json",
            "bundle/manifest.json",
        ]
        .map(String::from)
        .to_vec();

        let report = w
            .bundle(
                "bundle/evidence.zip",
                &asked,
                Some("bundle/manifest.json"),
                "rel-1",
                "11-production-deployment",
                "2025-01-02T03:04:05Z",
            )
            .expect("bundle");

        assert_eq!(report.zip, "bundle/evidence.zip");
        assert_eq!(report.missing, ["pre-deployment/security-scan.json"]);
        let paths: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["pre-deployment/staging-test-results.json", "approvals.json", "bundle/manifest.json"]);
        assert_eq!(Some(report.zip_sha256.clone()), w.sha256_of("bundle/evidence.zip").expect("zip sha"));
        for digest in &report.files {
            assert_eq!(Some(digest.sha256.clone()), w.sha256_of(&digest.path).expect("sha"), "{}", digest.path);
        }

        // The zip holds exactly those files, byte for byte.
        let manifest_bytes = fs::read(w.root().join("bundle/manifest.json")).expect("manifest");
        let entries = zip_entries(&w.root().join("bundle/evidence.zip"));
        assert_eq!(
            entries,
            vec![
                ("pre-deployment/staging-test-results.json".to_owned(), a.clone()),
                ("approvals.json".to_owned(), b.clone()),
                ("bundle/manifest.json".to_owned(), manifest_bytes.clone()),
            ]
        );

        // The manifest describes the other files and the incompleteness.
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("manifest json");
        assert_eq!(manifest["release"], "rel-1");
        assert_eq!(manifest["protocol"], "11-production-deployment");
        assert_eq!(manifest["generated_at"], "2025-01-02T03:04:05Z");
        assert_eq!(manifest["missing"][0], "pre-deployment/security-scan.json");
        let completeness = manifest["completeness"].as_f64().expect("completeness");
        assert!((completeness - 2.0 / 3.0).abs() < 1e-9, "{completeness}");
        assert!(completeness < 1.0);
        let listed: Vec<FileDigest> = serde_json::from_value(manifest["files"].clone()).expect("files");
        assert_eq!(listed, report.files[..2]);
        assert_eq!(listed[0].sha256, sha(&a));
        assert_eq!(listed[1].bytes, b.len() as u64);

        // Same evidence, same bundle: the zip is reproducible.
        let again = w
            .bundle(
                "bundle/evidence.zip",
                &asked,
                Some("bundle/manifest.json"),
                "rel-1",
                "11-production-deployment",
                "2025-01-02T03:04:05Z",
            )
            .expect("bundle again");
        assert_eq!(again, report);
        assert_eq!(listing(&w.root().join("bundle")), ["evidence.zip", "manifest.json"]);
    }

    #[test]
    fn bundle_without_manifest_or_files() {
        let (_dir, w) = writer();
        w.write("a.txt", b"a").expect("write");
        let report = w.bundle("out.zip", &["a.txt".to_owned()], None, "r", "p", "t").expect("bundle");
        assert_eq!(report.files.len(), 1);
        assert!(report.missing.is_empty());
        assert_eq!(zip_entries(&w.root().join("out.zip")), vec![("a.txt".to_owned(), b"a".to_vec())]);

        let empty = w.bundle("empty.zip", &[], Some("empty.json"), "r", "p", "t").expect("empty bundle");
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(w.root().join("empty.json")).expect("read")).expect("json");
        assert_eq!(manifest["completeness"], 1.0);
        assert_eq!(empty.files.len(), 1, "just the manifest");
    }

    #[test]
    fn bundle_refuses_traversal_anywhere() {
        let (_dir, w) = writer();
        let bad = ["../../etc/passwd".to_owned()];
        assert_eq!(w.bundle("b.zip", &bad, None, "r", "p", "t").expect_err("file").kind(), io::ErrorKind::InvalidInput);
        assert!(w.bundle("../b.zip", &[], None, "r", "p", "t").is_err());
        assert!(w.bundle("b.zip", &[], Some("/tmp/m.json"), "r", "p", "t").is_err());
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*", "a"));
        assert!(glob_match("*.json", "report.json"));
        assert!(!glob_match("*.json", "report.json.bak"));
        assert!(glob_match("staging-*-results.json", "staging-42-results.json"));
        assert!(glob_match("staging-*-results.json", "staging--results.json"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("exact.txt", "exact.txt"));
        assert!(!glob_match("exact.txt", "exact.txtx"));
        assert!(!glob_match("*.json", ".hidden.json"));
        assert!(glob_match(".*.json", ".hidden.json"));
        assert!(glob_match("**", "x"));
        assert!(glob_match("rés*ümé", "résXümé"));
    }

    fn set_age(path: &Path, age: Duration) {
        let file = OpenOptions::new().write(true).open(path).expect("open");
        file.set_modified(SystemTime::now() - age).expect("set mtime");
    }

    fn item(dir: &Path, name: &str, required: bool, max_age: Option<Duration>) -> InputCheck {
        InputCheck { name: name.to_owned(), dir: dir.to_path_buf(), required, max_age, expects: Vec::new() }
    }

    fn zip_with(member: &str, body: &str) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        zip.start_file(member, zip::write::SimpleFileOptions::default()).expect("start");
        io::Write::write_all(&mut zip, body.as_bytes()).expect("write");
        zip.finish().expect("finish").into_inner()
    }

    fn expect(file: Option<&str>, field: &str, equals: Option<serde_json::Value>) -> ContentCheck {
        ContentCheck { file: file.map(str::to_string), field: field.into(), equals, proves: Some("QA sign-off".into()) }
    }

    #[test]
    fn a_package_is_read_for_what_it_must_say_and_each_field_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = r#"{"recommendation": "ready", "signed_by": "Sam QE", "signoff": {"at": ""}}"#;
        fs::write(dir.path().join("QA.zip"), zip_with("qa.json", report)).unwrap();
        let mut qa = item(dir.path(), "QA.zip", true, None);
        qa.expects = vec![
            expect(Some("qa.json"), "recommendation", Some(serde_json::json!("ready"))),
            expect(Some("qa.json"), "signed_by", None),
        ];
        let [ok] = &check_inputs(std::slice::from_ref(&qa))[..] else { panic!() };
        assert_eq!(ok.status, "present");
        assert_eq!(ok.content[1].found, Some(serde_json::json!("Sam QE")));
        assert_eq!(ok.content[1].proves.as_deref(), Some("QA sign-off"));

        // A hold recommendation, an empty nested field, a member or a field that is not there.
        fs::write(dir.path().join("QA.zip"), zip_with("qa.json", &report.replace("ready", "hold"))).unwrap();
        qa.expects.push(expect(Some("qa.json"), "signoff.at", None));
        qa.expects.push(expect(Some("other.json"), "x", None));
        qa.expects.push(expect(Some("qa.json"), "nope", None));
        let [bad] = &check_inputs(std::slice::from_ref(&qa))[..] else { panic!() };
        assert_eq!(bad.status, "content check failed");
        let oks: Vec<bool> = bad.content.iter().map(|c| c.ok).collect();
        assert_eq!(oks, [false, true, false, false, false]);
        assert_eq!(bad.content[0].found, Some(serde_json::json!("hold")));
        assert_eq!(bad.content[3].error.as_deref(), Some("other.json not in QA.zip"));
        assert_eq!(bad.content[4].error.as_deref(), Some("qa.json has no field `nope`"));

        // A JSON artifact is read itself; a file that is not JSON says so.
        fs::write(dir.path().join("m.json"), r#"{"services": ["api"], "scope": []}"#).unwrap();
        let mut m = item(dir.path(), "m.json", true, None);
        m.expects = vec![expect(None, "services", None), expect(None, "scope", None)];
        let [m] = &check_inputs(&[m])[..] else { panic!() };
        assert_eq!((m.status.as_str(), m.content[0].ok, m.content[1].ok), ("content check failed", true, false));
        fs::write(dir.path().join("t.json"), "not json").unwrap();
        let mut t = item(dir.path(), "t.json", true, None);
        t.expects = vec![expect(None, "x", None)];
        let [t] = &check_inputs(&[t])[..] else { panic!() };
        assert!(t.content[0].error.as_deref().unwrap().starts_with("t.json is not JSON"), "{t:?}");
    }

    fn valid_zip() -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        zip.start_file("x.txt", zip::write::SimpleFileOptions::default()).expect("start");
        io::Write::write_all(&mut zip, b"x").expect("write");
        zip.finish().expect("finish").into_inner()
    }

    #[test]
    fn check_inputs_reports_each_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let hour = Duration::from_secs(3600);
        fs::write(d.join("release-notes.md"), b"notes").expect("write");
        fs::create_dir_all(d.join("scans")).expect("mkdir");
        fs::write(d.join("scans/sast-1.json"), b"old").expect("write");
        fs::write(d.join("scans/sast-2.json"), b"new").expect("write");
        fs::write(d.join("scans/.sast-tmp.json"), b"hidden").expect("write");
        fs::write(d.join("scans/readme.txt"), b"other").expect("write");
        set_age(&d.join("scans/sast-1.json"), hour);
        fs::write(d.join("bundle.zip"), valid_zip()).expect("write");
        fs::write(d.join("broken.zip"), b"PK\x03\x04 definitely not a zip").expect("write");
        fs::write(d.join("stale.json"), b"stale").expect("write");
        set_age(&d.join("stale.json"), 2 * hour);
        fs::create_dir_all(d.join("runs/a")).expect("mkdir");
        fs::create_dir_all(d.join("runs/b")).expect("mkdir");
        fs::write(d.join("runs/b/result.json"), b"b").expect("write");
        fs::write(d.join("runs/not-a-dir"), b"file").expect("write");

        let statuses = check_inputs(&[
            item(d, "release-notes.md", true, Some(hour)),
            item(d, "missing-plan.md", true, None),
            item(d, "scans/sast-*.json", false, None),
            item(d, "scans/dast-*.json", false, None),
            item(d, "bundle.zip", true, None),
            item(d, "broken.zip", true, None),
            item(d, "stale.json", true, Some(hour)),
            item(d, "scans/sast-*.json", true, Some(Duration::from_secs(60))),
            item(d, "runs/*/result.json", true, None),
            item(d, "no-such-dir/*.json", true, None),
            item(d, "scans", true, None),
        ]);
        let summary: Vec<(&str, &str, usize)> =
            statuses.iter().map(|s| (s.name.as_str(), s.status.as_str(), s.found.len())).collect();
        assert_eq!(
            summary,
            [
                ("release-notes.md", "present", 1),
                ("missing-plan.md", "missing", 0),
                ("scans/sast-*.json", "present", 2),
                ("scans/dast-*.json", "missing", 0),
                ("bundle.zip", "present", 1),
                ("broken.zip", "corrupt", 1),
                ("stale.json", "expired", 1),
                // The newest match is fresh, so an old sibling does not expire the glob.
                ("scans/sast-*.json", "present", 2),
                ("runs/*/result.json", "present", 1),
                ("no-such-dir/*.json", "missing", 0),
                // A folder is not an artifact.
                ("scans", "missing", 0),
            ]
        );

        assert_eq!(statuses[0].sha256, Some(sha(b"notes")));
        assert!(statuses[0].required);
        assert!(!statuses[2].required);
        assert_eq!(statuses[1].sha256, None);
        // Newest first: the fresh sast-2 is the first match and the one hashed.
        assert!(statuses[2].found[0].ends_with("scans/sast-2.json"), "{:?}", statuses[2].found);
        assert!(statuses[2].found[1].ends_with("scans/sast-1.json"));
        assert_eq!(statuses[2].sha256, Some(sha(b"new")));
        assert!(statuses[5].sha256.is_some(), "a corrupt file is still fingerprinted");
        assert_eq!(statuses[6].sha256, Some(sha(b"stale")));
        assert!(statuses[8].found[0].ends_with("runs/b/result.json"));
    }

    #[test]
    fn a_glob_whose_newest_match_is_old_is_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in ["a.json", "b.json"] {
            fs::write(d.join(name), name).expect("write");
            set_age(&d.join(name), Duration::from_secs(7200));
        }
        let status = check_inputs(&[item(d, "*.json", true, Some(Duration::from_secs(3600)))]);
        assert_eq!(status[0].status, "expired");
        assert_eq!(status[0].found.len(), 2);
    }
}
