//! Whether a directory a writer will create can be created, checked before anything runs.

use std::io::ErrorKind;
use std::path::Path;

/// Checks that directory `dir` exists or can be created by this process, and that files can
/// be created in it, without leaving anything behind: the deepest part of the path that
/// exists must be a directory, and an empty probe directory is created in it and removed at
/// once. The error says which part of the path is at fault.
pub fn check_directory(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Err("the path is empty".to_owned());
    }
    let mut existing = dir;
    // Bounded by the number of components of the path.
    loop {
        let probe_at = if existing.as_os_str().is_empty() {
            Path::new(".")
        } else {
            existing
        };
        match std::fs::metadata(probe_at) {
            Ok(m) if m.is_dir() => {
                existing = probe_at;
                break;
            }
            Ok(_) => {
                return Err(format!(
                    "cannot create {}: {} is not a directory",
                    dir.display(),
                    probe_at.display()
                ))
            }
            // Not found, or a part of the path is a file: look further up, which finds it.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                match probe_at.parent() {
                    Some(parent) => existing = parent,
                    None => return Err(format!("cannot create {}: {e}", dir.display())),
                }
            }
            Err(e) => {
                return Err(format!(
                    "cannot create {}: {}: {e}",
                    dir.display(),
                    probe_at.display()
                ))
            }
        }
    }
    let probe = existing.join(format!(".crypto-feeder-validate-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            // Nothing else is inside: removing it can only fail if someone else removed it.
            let _ = std::fs::remove_dir(&probe);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "cannot create {}: {} is not writable: {e}",
            dir.display(),
            existing.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("crypto-feeder-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_directory_under_a_writable_one_can_be_created_and_is_not() {
        let root = scratch("ok");
        let dir = root.join("a/b/c");
        assert_eq!(check_directory(&dir), Ok(()));
        assert!(!root.join("a").exists(), "validate must create nothing");
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
        assert!(left.is_empty(), "the probe was left behind: {left:?}");
        assert_eq!(check_directory(&root), Ok(()), "an existing directory");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_directory_below_a_file_cannot_be_created() {
        let root = scratch("file");
        let file = root.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = check_directory(&file.join("sub/dir")).unwrap_err();
        assert!(
            err.contains(&format!("{} is not a directory", file.display())),
            "{err}"
        );
        let err = check_directory(&file).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        assert_eq!(
            check_directory(Path::new("")).unwrap_err(),
            "the path is empty"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
