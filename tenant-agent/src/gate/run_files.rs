//! The files a command runs (`bash F`, `./F`, `python3 F`, `make`, `npm run X`), read for the
//! classifier and pinned by digest.
//!
//! The classifier is pure: it names the files it wants ([`safety::Verdict::files_needed`]); the
//! gate reads them here (bounded, UTF-8 only) and classifies again with their content. Each
//! file's SHA-256 goes into the action, so its `action_hash`, and so every grant, covers exactly
//! the content judged; before an approved or green action runs, [`verify`] reads the files again
//! and refuses to run anything that changed.

use std::collections::BTreeMap;
use std::io::Read;

use safety::FileContent;
use shared::FileDigest;

/// Larger files are not judged (the command is then at least red).
pub const MAX_RUN_FILE_BYTES: u64 = 256 * 1024;

/// How one file reads now.
fn read_one(path: &str) -> FileContent {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return FileContent::Unreadable("it does not exist".into());
        }
        Err(e) => return FileContent::Unreadable(format!("it cannot be read: {e}")),
    };
    match file.metadata() {
        Ok(m) if !m.is_file() => return FileContent::Unreadable("it is not a regular file".into()),
        Ok(m) if m.len() > MAX_RUN_FILE_BYTES => {
            return FileContent::Unreadable(format!(
                "it is {} bytes, over the {MAX_RUN_FILE_BYTES}-byte limit",
                m.len()
            ));
        }
        Ok(_) => {}
        Err(e) => return FileContent::Unreadable(format!("it cannot be read: {e}")),
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_RUN_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return FileContent::Unreadable(format!("it cannot be read: {e}"));
    }
    if bytes.len() as u64 > MAX_RUN_FILE_BYTES {
        return FileContent::Unreadable("it grew past the size limit while being read".into());
    }
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => FileContent::Text(text),
        _ => FileContent::Unreadable("it is a binary file".into()),
    }
}

/// Reads the files a verdict asked for (relative names stay as given: they could not be
/// resolved and are reported unreadable).
pub fn read(paths: &[String]) -> BTreeMap<String, FileContent> {
    paths
        .iter()
        .map(|p| {
            let content = if p.starts_with('/') {
                read_one(p)
            } else {
                FileContent::Unreadable("its location is not known".into())
            };
            (p.clone(), content)
        })
        .collect()
}

/// The digest recorded in the action for a file as read.
fn digest(content: &FileContent) -> String {
    match content {
        FileContent::Text(text) => shared::sha256_hex(text.as_bytes()),
        FileContent::Unreadable(why) => format!("unreadable: {why}"),
    }
}

/// The digests to put into the action.
pub fn digests(files: &BTreeMap<String, FileContent>) -> Vec<FileDigest> {
    files
        .iter()
        .map(|(path, content)| FileDigest {
            path: path.clone(),
            sha256: digest(content),
        })
        .collect()
}

/// Checks that every file still reads as it did when the action was judged.
pub fn verify(files: &[FileDigest]) -> Result<(), String> {
    for f in files {
        let now = digest(&read_one(&f.path));
        if now != f.sha256 {
            return Err(format!(
                "`{}` changed since the action was judged; nothing ran (propose it again)",
                f.path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_changed_file_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.sh").display().to_string();
        std::fs::write(&path, "ls\n").unwrap();
        let read = read(std::slice::from_ref(&path));
        assert_eq!(read.get(&path), Some(&FileContent::Text("ls\n".into())));
        let pinned = digests(&read);
        assert!(verify(&pinned).is_ok());
        std::fs::write(&path, "rm -rf ~\n").unwrap();
        assert!(verify(&pinned).unwrap_err().contains("changed"));
        std::fs::remove_file(&path).unwrap();
        assert!(verify(&pinned).is_err());
    }

    #[test]
    fn binary_large_and_missing_files_are_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("a.out").display().to_string();
        std::fs::write(&bin, b"\x7fELF\0\0").unwrap();
        let big = dir.path().join("big.sh").display().to_string();
        std::fs::write(&big, "x".repeat(MAX_RUN_FILE_BYTES as usize + 1)).unwrap();
        let missing = dir.path().join("nope.sh").display().to_string();
        let read = read(&[bin.clone(), big.clone(), missing.clone(), "rel.sh".into()]);
        for p in [&bin, &big, &missing, &"rel.sh".to_owned()] {
            assert!(
                matches!(read.get(p), Some(FileContent::Unreadable(_))),
                "{p}"
            );
        }
    }
}
