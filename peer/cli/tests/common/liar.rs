//! A hostile peer: announces a file to the tracker like an honest seeder, then lies on the wire.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use peer_engine::bitfield::Bitfield;
use peer_engine::connection::Connection;
use peer_engine::manifest::Manifest;
use peer_engine::metainfo::{Info, Layout};
use peer_engine::name::ShareName;
use peer_engine::wire::{Frame, PeerId, METAINFO_PIECE, VERSION};
use tracker_proto::client::ClientConfig;
use tracker_proto::TrackerClient;
use tracker_proto::{FileInfo, FileName};

/// How the peer lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Honest handshake and manifest; every chunk has a flipped byte.
    CorruptChunks,
    /// A manifest of made-up hashes (and corrupt chunks for those who skip it).
    WrongManifest,
    /// Answers requests with bytes that are not a frame (an absurd length prefix).
    Garbage,
    /// Takes requests and never answers them (a stalled peer).
    Silent,
    /// Answers GET_METAINFO with the info dictionary of other content (another id), and
    /// otherwise corrupts chunks.
    WrongMetainfo,
    /// Claims every chunk, unchokes, then rejects every request (a BITFIELD lie).
    FalseClaims,
    /// Sends a chunk (a correct one) nobody asked for.
    UnrequestedChunk,
    /// Announces every chunk, then repeats HAVEs of chunks it already announced.
    HaveFlood,
}

/// A running liar; it lives as long as the test process.
pub struct Liar {
    pub addr: SocketAddr,
    /// Connections that got past the handshake.
    pub connections: Arc<AtomicU32>,
}

/// Starts a liar serving `name` (whose honest content is `data`) and announces it to `tracker`.
pub fn start(tracker: SocketAddr, name: &str, data: Vec<u8>, lie: Lie) -> Liar {
    let (tx, rx) = std::sync::mpsc::channel();
    let connections = Arc::new(AtomicU32::new(0));
    let counter = connections.clone();
    let name = name.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind liar");
            let addr = listener.local_addr().expect("liar addr");
            let manifest = Arc::new(Manifest::from_data(&data, 2048).expect("manifest"));
            let client = TrackerClient::bind(tracker, ClientConfig::default())
                .await
                .expect("client");
            let info = FileInfo::new(
                FileName::new(&name).expect("name"),
                manifest.size(),
                2048,
                manifest.id(),
            )
            .expect("info");
            client.share(&info, addr).await.expect("liar announce");
            tx.send(addr).expect("report addr");
            let data = Arc::new(data);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (manifest, data, counter) = (manifest.clone(), data.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = lie_to(Connection::new(stream), &manifest, &data, lie, &counter).await;
                });
            }
        });
    });
    let addr = rx.recv().expect("liar started");
    Liar { addr, connections }
}

async fn lie_to(
    mut conn: Connection,
    manifest: &Manifest,
    data: &[u8],
    lie: Lie,
    counter: &AtomicU32,
) -> Result<(), Box<dyn std::error::Error>> {
    let Frame::Handshake { name, file_id, .. } = conn.read_frame().await? else {
        return Ok(());
    };
    counter.fetch_add(1, Ordering::Relaxed);
    conn.queue(&Frame::Handshake {
        version: VERSION,
        peer_id: PeerId::random(),
        file_id,
        name: name.clone(),
        listen: None,
    });
    let field = Bitfield::full(manifest.chunk_count());
    conn.queue(&Frame::Bitfield(Bytes::copy_from_slice(field.as_wire())));
    // Serves whoever asks, as an honest seeder with a free upload slot would.
    conn.queue(&Frame::Unchoke);
    match lie {
        Lie::UnrequestedChunk => conn.queue(&Frame::Chunk {
            index: 0,
            data: Bytes::copy_from_slice(&data[..manifest.chunk_len(0)]),
        }),
        Lie::HaveFlood => {
            let announced: Vec<u32> = (0..manifest.chunk_count().min(100)).collect();
            for _ in 0..10 {
                conn.queue(&Frame::Have(announced.clone()));
            }
        }
        _ => {}
    }
    conn.flush().await?;
    loop {
        match conn.read_frame().await? {
            Frame::GetManifest { start, count } => {
                let hashes: Vec<[u8; 32]> = manifest
                    .hashes(start, count)?
                    .into_iter()
                    .map(|h| {
                        if lie == Lie::WrongManifest {
                            [0x5a; 32]
                        } else {
                            h
                        }
                    })
                    .collect();
                conn.queue(&Frame::Manifest { start, hashes });
            }
            Frame::GetMetainfo { piece: 0 } if lie == Lie::WrongMetainfo => {
                let other = Info {
                    name: ShareName::new(name.as_str())?,
                    piece_length: manifest.chunk_size(),
                    id: Manifest::from_data(b"other content", 2048)?.id(),
                    layout: Layout::Single {
                        length: manifest.size(),
                    },
                };
                let bytes = other.encode();
                conn.queue(&Frame::Metainfo {
                    piece: 0,
                    total: bytes.len() as u32,
                    data: Bytes::from(bytes),
                });
            }
            // Every peer of this version answers GET_METAINFO (protocol.txt 2.6): a downloader by
            // name asks for it when a manifest is not a single file's.
            Frame::GetMetainfo { piece } => {
                let bytes = Info {
                    name: ShareName::new(name.as_str())?,
                    piece_length: manifest.chunk_size(),
                    id: manifest.id(),
                    layout: Layout::Single {
                        length: manifest.size(),
                    },
                }
                .encode();
                let start = (piece as usize * METAINFO_PIECE).min(bytes.len());
                let end = (start + METAINFO_PIECE).min(bytes.len());
                conn.queue(&Frame::Metainfo {
                    piece,
                    total: bytes.len() as u32,
                    data: Bytes::copy_from_slice(&bytes[start..end]),
                });
            }
            Frame::Request(_) if lie == Lie::Silent => {}
            Frame::Request(run) if lie == Lie::FalseClaims => conn.queue(&Frame::Reject(run)),
            Frame::Request(run) => {
                if lie == Lie::Garbage {
                    conn.queue(&Frame::Have(vec![run.first]));
                    // A length no frame may have, then a few bytes of nothing.
                    conn.queue_encoded(Bytes::from_static(&[
                        0xff, 0xff, 0xff, 0xff, 0x07, 1, 2, 3,
                    ]));
                    conn.flush().await?;
                    return Ok(());
                }
                for i in run.indices() {
                    let start = manifest.offset(i) as usize;
                    let mut chunk = data[start..start + manifest.chunk_len(i)].to_vec();
                    chunk[0] ^= 0x01;
                    conn.queue(&Frame::Chunk {
                        index: i,
                        data: Bytes::from(chunk),
                    });
                }
            }
            _ => {}
        }
        conn.flush().await?;
    }
}
