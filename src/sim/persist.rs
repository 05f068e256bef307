//! File backing for the board's non-volatile memories, so that internal
//! flash and the W25Q64JV keep their contents across restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot create the state folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the state file {path} (bytes {start:#x}..{end:#x})")]
    Write {
        path: PathBuf,
        start: usize,
        end: usize,
        #[source]
        source: std::io::Error,
    },
}

/// One memory image backed by one file of exactly the memory's size.
#[derive(Debug, Clone)]
pub struct BackingFile {
    path: PathBuf,
}

impl BackingFile {
    /// Open (or create, erased to 0xFF) `dir/name` holding `size` bytes and
    /// return the current contents. A short file is padded with 0xFF.
    pub fn open(dir: &Path, name: &str, size: usize) -> Result<(Self, Vec<u8>), PersistError> {
        fs::create_dir_all(dir).map_err(|source| PersistError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(name);
        let mut data = Vec::with_capacity(size);
        match File::open(&path) {
            Ok(f) => {
                f.take(size as u64)
                    .read_to_end(&mut data)
                    .map_err(|source| PersistError::Read {
                        path: path.clone(),
                        source,
                    })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(PersistError::Read { path, source }),
        }
        let existing = data.len();
        data.resize(size, 0xFF);
        let file = Self { path };
        if existing < size {
            file.store(&data, existing..size)?;
        }
        Ok((file, data))
    }

    /// Write `data[range]` at the same offset in the file and sync it.
    pub fn store(&self, data: &[u8], range: Range<usize>) -> Result<(), PersistError> {
        let err = |source| PersistError::Write {
            path: self.path.clone(),
            start: range.start,
            end: range.end,
            source,
        };
        let end = range.end.min(data.len());
        let start = range.start.min(end);
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(err)?;
        f.seek(SeekFrom::Start(start as u64)).map_err(err)?;
        f.write_all(&data[start..end]).map_err(err)?;
        f.sync_data().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_state_file_starts_erased_and_keeps_writes() {
        let dir = std::env::temp_dir().join(format!("extflash-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (f, mut data) = BackingFile::open(&dir, "mem.bin", 64).unwrap();
        assert!(data.iter().all(|&b| b == 0xFF));
        data[10] = 0x42;
        f.store(&data, 10..11).unwrap();
        let (_, again) = BackingFile::open(&dir, "mem.bin", 64).unwrap();
        assert_eq!(again[10], 0x42);
        assert_eq!(again[11], 0xFF);
        let _ = fs::remove_dir_all(&dir);
    }
}
