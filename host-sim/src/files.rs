//! Opening the files a command reads: only regular files. Anything else named as an input
//! is refused before it is opened, with a message saying what it is: opening a FIFO for
//! reading blocks until a writer appears, and a device such as `/dev/zero` never ends.
//! Every path a subcommand reads (models, text, tokenizers, checkpoints, `config.json`)
//! goes through [`open_regular`].

use std::fmt;
use std::fs::{File, FileType};
use std::io::{self, Read};
use std::path::Path;

/// The error payload for a path that is neither a regular file nor a directory (kind
/// [`io::ErrorKind::InvalidInput`]; find it with [`not_regular`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotRegular(pub &'static str);

impl fmt::Display for NotRegular {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a regular file (it is {})", self.0)
    }
}

impl std::error::Error for NotRegular {}

/// The [`NotRegular`] payload of `e`, if it has one.
pub fn not_regular(e: &io::Error) -> Option<NotRegular> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<NotRegular>()).copied()
}

/// What a non-regular file is, in words.
fn kind_of(t: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    let _ = t;
    "not a file"
}

/// `Ok` for a regular file; a directory is [`io::ErrorKind::IsADirectory`], anything else
/// [`NotRegular`].
fn check(t: FileType) -> io::Result<()> {
    if t.is_file() {
        Ok(())
    } else if t.is_dir() {
        Err(io::Error::from(io::ErrorKind::IsADirectory))
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, NotRegular(kind_of(t))))
    }
}

/// Open `path` for reading if it is a regular file (symbolic links followed). The type is
/// checked before opening, so a FIFO is never opened, and again on the opened file, so a
/// path swapped in between is caught too.
pub fn open_regular(path: &Path) -> io::Result<File> {
    check(std::fs::metadata(path)?.file_type())?;
    let f = File::open(path)?;
    check(f.metadata()?.file_type())?;
    Ok(f)
}

/// The whole content of the regular file `path`.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// The whole content of the regular file `path` as UTF-8 text.
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    let mut f = open_regular(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_read_and_everything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "hello").unwrap();
        assert_eq!(read_regular(&p).unwrap(), b"hello");
        assert_eq!(read_regular_to_string(&p).unwrap(), "hello");
        let e = read_regular(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
        let e = read_regular(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(not_regular(&e), None);
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/null")).unwrap_err();
            assert_eq!(not_regular(&e), Some(NotRegular("a character device")));
            assert_eq!(e.to_string(), "not a regular file (it is a character device)");
        }
    }
}
