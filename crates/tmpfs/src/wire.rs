//! The supervisor → shim frame: one complete file set, length-prefixed, little-endian.
//!
//! ```text
//! "LBX1" u32:count { u32:target_len target  u32:uid u32:gid u32:mode  u32:data_len data }*
//! ```
//!
//! Plain bytes over a pipe: the shim must not need a serialisation framework, and this format
//! reads straight into `Zeroizing` buffers. Bounds stop a confused peer from making the shim
//! allocate without limit (a secret is at most 500 KiB in lockbox, as in Docker).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::writer::SecretFile;

const MAGIC: &[u8; 4] = b"LBX1";
const MAX_FILES: u32 = 4096;
const MAX_TARGET: u32 = 4096;
/// Above Docker's 500 KiB secret limit with room for configs (1000 KiB).
const MAX_DATA: u32 = 1024 * 1024;

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Encodes a file set into one buffer, zeroized on drop, so it goes out in one `write_all`.
pub(crate) fn encode(files: &[SecretFile]) -> io::Result<Zeroizing<Vec<u8>>> {
    let too_big =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too large"));
    let total: usize = files
        .iter()
        .map(|f| 24 + f.target.as_os_str().len() + f.data.len())
        .sum();
    let mut buf = Zeroizing::new(Vec::with_capacity(8 + total));
    buf.extend_from_slice(MAGIC);
    put_u32(
        &mut buf,
        u32::try_from(files.len())
            .ok()
            .filter(|n| *n <= MAX_FILES)
            .ok_or_else(|| too_big("file set"))?,
    );
    for f in files {
        let t = f.target.as_os_str().as_bytes();
        put_u32(
            &mut buf,
            u32::try_from(t.len())
                .ok()
                .filter(|n| *n <= MAX_TARGET)
                .ok_or_else(|| too_big("target path"))?,
        );
        buf.extend_from_slice(t);
        put_u32(&mut buf, f.uid);
        put_u32(&mut buf, f.gid);
        put_u32(&mut buf, f.mode);
        put_u32(
            &mut buf,
            u32::try_from(f.data.len())
                .ok()
                .filter(|n| *n <= MAX_DATA)
                .ok_or_else(|| too_big("secret"))?,
        );
        buf.extend_from_slice(&f.data);
    }
    Ok(buf)
}

pub(crate) fn write_files(w: &mut impl Write, files: &[SecretFile]) -> io::Result<()> {
    let buf = encode(files)?;
    w.write_all(&buf)?;
    w.flush()
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn bounded(v: u32, max: u32, what: &str) -> io::Result<usize> {
    if v > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} of {v} exceeds {max}"),
        ));
    }
    Ok(v as usize)
}

/// Reads one file set. `Ok(None)` on a clean end of stream before a frame starts.
pub(crate) fn read_files(r: &mut impl Read) -> io::Result<Option<Vec<SecretFile>>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut magic[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if &magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame magic",
        ));
    }
    let count = bounded(get_u32(r)?, MAX_FILES, "file count")?;
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let tlen = bounded(get_u32(r)?, MAX_TARGET, "target length")?;
        let mut t = vec![0u8; tlen];
        r.read_exact(&mut t)?;
        let uid = get_u32(r)?;
        let gid = get_u32(r)?;
        let mode = get_u32(r)?;
        let dlen = bounded(get_u32(r)?, MAX_DATA, "secret size")?;
        let mut data = Zeroizing::new(vec![0u8; dlen]);
        r.read_exact(&mut data)?;
        files.push(SecretFile {
            target: PathBuf::from(OsString::from_vec(t)),
            uid,
            gid,
            mode,
            data,
        });
    }
    Ok(Some(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_eof() {
        let files = vec![
            SecretFile::new("a", b"one".to_vec())
                .owner(1, 2)
                .mode(0o400),
            SecretFile::new("/etc/x", Vec::new()),
        ];
        let buf = encode(&files).unwrap();
        let mut r = &buf[..];
        let back = read_files(&mut r).unwrap().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].target, PathBuf::from("a"));
        assert_eq!((back[0].uid, back[0].gid, back[0].mode), (1, 2, 0o400));
        assert_eq!(&back[0].data[..], b"one");
        assert!(read_files(&mut r).unwrap().is_none());
        let mut short = &buf[..buf.len() - 1];
        assert!(read_files(&mut short).is_err());
    }
}
