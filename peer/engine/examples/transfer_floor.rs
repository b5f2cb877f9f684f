//! The least work a transfer in this protocol can do, and nothing else: what
//! `scripts/bench-transfer.sh` measures beside the raw copy and the peer, so the peer's figure
//! can be read against the floor of the work it must do on this machine, not only against a
//! copy that does none of it.
//!
//! `serve FILE` prints `listening ADDR`, then for one connection sends the file's size and
//! chunk hashes and every chunk as a CHUNK frame, in order, read with one positioned vectored
//! read per batch straight into the frames (as the seeder does). `fetch ADDR OUT` receives
//! them: one thread reads batches of frames off the socket, another parses the frames with the engine's decoder,
//! verifies the batch with the engine's SHA-256 lanes and writes it with one positioned
//! vectored write straight from the received buffer (as the leecher does), then fsyncs. Both sides are plain blocking code with
//! batches of 1 MiB (the raw copy's buffer): no requests, no runtime, no choking, no rate
//! limits, no tracker. It is a bound no real peer reaches, not a peer.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use peer_engine::manifest::{ChunkHash, Manifest, HASH_LEN};
use peer_engine::storage::Storage;
use peer_engine::wire::{chunk_frames, ChunkRun, Frame, CHUNK_HEADER};

const CHUNK_SIZE: u32 = 2048;
/// Chunks per read, send, receive and write.
const BATCH: u32 = 512;
/// Batches received and not yet written.
const QUEUED: usize = 4;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, file] if mode == "serve" => serve(file),
        [mode, addr, out] if mode == "fetch" => fetch(addr, out),
        _ => bail!("usage: transfer_floor serve FILE | transfer_floor fetch ADDR OUT"),
    }
}

fn serve(path: &str) -> Result<()> {
    let manifest = Manifest::from_file(path.as_ref(), CHUNK_SIZE).context("hashing the file")?;
    let storage = Storage::One(File::open(path)?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("listening {}", listener.local_addr()?);
    io::stdout().flush()?;
    let (mut socket, _) = listener.accept()?;
    let mut head = BufWriter::new(&mut socket);
    head.write_all(&manifest.size().to_be_bytes())?;
    manifest.write_hashes(&mut head)?;
    head.flush()?;
    drop(head);
    for run in batches(&manifest) {
        let lens = lens(&manifest, run);
        let mut frames = vec![0u8; frames_len(&lens)];
        let slots = chunk_frames(&mut frames, run.first, &lens);
        storage.read_exact_vectored_at(slots, manifest.offset(run.first))?;
        socket.write_all(&frames)?;
    }
    Ok(())
}

fn fetch(addr: &str, out: &str) -> Result<()> {
    let mut socket = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let manifest = Arc::new(read_manifest(&mut socket)?);
    let file = File::create(out)?;
    file.set_len(manifest.size())?;
    let storage = Storage::One(file);
    let (received, to_store) = mpsc::sync_channel::<(ChunkRun, Vec<u8>)>(QUEUED);
    let storing = thread::spawn({
        let manifest = manifest.clone();
        move || -> Result<Storage> {
            for (run, frames) in to_store {
                store(&manifest, &storage, run, Bytes::from(frames))?;
            }
            storage.sync_data()?;
            Ok(storage)
        }
    });
    for run in batches(&manifest) {
        let mut frames = vec![0u8; frames_len(&lens(&manifest, run))];
        socket.read_exact(&mut frames)?;
        if received.send((run, frames)).is_err() {
            break;
        }
    }
    drop(received);
    storing
        .join()
        .map_err(|_| anyhow::anyhow!("the storing thread panicked"))??;
    Ok(())
}

fn read_manifest(socket: &mut TcpStream) -> Result<Manifest> {
    let mut size = [0u8; 8];
    socket.read_exact(&mut size)?;
    let size = u64::from_be_bytes(size);
    let count = usize::try_from(size.div_ceil(u64::from(CHUNK_SIZE)))?;
    let mut hashes: Vec<ChunkHash> = vec![[0u8; HASH_LEN]; count];
    socket.read_exact(hashes.as_flattened_mut())?;
    Ok(Manifest::from_hashes(size, CHUNK_SIZE, hashes)?)
}

/// Parses `frames` (the CHUNK frames of `run`), verifies and writes their data.
fn store(manifest: &Manifest, storage: &Storage, run: ChunkRun, frames: Bytes) -> Result<()> {
    let mut datas = Vec::with_capacity(run.count as usize);
    let mut at = 0;
    for index in run.indices() {
        let len = Frame::check(&frames[at..])?.context("a frame cut short")?;
        match Frame::parse(frames.slice(at..at + len))? {
            Frame::Chunk { index: got, data }
                if got == index && data.len() == manifest.chunk_len(index) =>
            {
                datas.push(data)
            }
            _ => bail!("frame {index} is not the CHUNK expected"),
        }
        at += len;
    }
    let chunks: Vec<&[u8]> = datas.iter().map(|d| &d[..]).collect();
    let expected = manifest.hashes(run.first, run.count)?;
    if let Some(index) = manifest.first_mismatch(run.first, &chunks, &expected) {
        bail!("chunk {index} does not match the manifest");
    }
    storage.write_all_vectored_at(&chunks, manifest.offset(run.first))?;
    Ok(())
}

fn batches(manifest: &Manifest) -> impl Iterator<Item = ChunkRun> {
    let count = manifest.chunk_count();
    (0..count)
        .step_by(BATCH as usize)
        .map(move |first| ChunkRun::new(first, BATCH.min(count - first)))
}

fn lens(manifest: &Manifest, run: ChunkRun) -> Vec<usize> {
    run.indices().map(|i| manifest.chunk_len(i)).collect()
}

fn frames_len(lens: &[usize]) -> usize {
    lens.iter().map(|len| CHUNK_HEADER + len).sum()
}
