//! Taking JPEGs apart to break them on purpose (issue 14 tests): the header's marker segments,
//! and a few broken files that get past the header check and make libjpeg stop with a fatal error.

#![allow(dead_code)]

pub const EOI: [u8; 2] = [0xFF, 0xD9];

/// One marker segment of a JPEG header: its marker byte, where the marker starts and where its
/// payload (after the two length bytes) starts and ends.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub marker: u8,
    pub at: usize,
    pub payload: usize,
    pub end: usize,
}

/// The header segments up to and including the first SOS (the scan data follows it).
pub fn segments(jpeg: &[u8]) -> Vec<Segment> {
    let mut found = Vec::new();
    let mut at = 2; // after SOI
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let segment = Segment { marker, at, payload: at + 4, end: at + 2 + len };
        found.push(segment);
        if marker == 0xDA {
            break;
        }
        at = segment.end;
    }
    assert!(found.iter().any(|s| s.marker == 0xDA), "fixture has no SOS");
    found
}

pub fn find(jpeg: &[u8], is: impl Fn(u8) -> bool) -> Segment {
    *segments(jpeg).iter().find(|s| is(s.marker)).expect("fixture has the segment")
}

pub fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

pub fn with(jpeg: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut copy = jpeg.to_vec();
    edit(&mut copy);
    copy
}

pub fn without(jpeg: &[u8], segment: Segment) -> Vec<u8> {
    [&jpeg[..segment.at], &jpeg[segment.end..]].concat()
}

/// Files whose header parses but that libjpeg refuses with a fatal error once decoding starts
/// (before issue 14 each of these unwound through the decoding thread), plus two the server
/// refuses earlier (cut short, and a 65535 x 65535 frame).
pub fn broken_variants(jpeg: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut no_tables = jpeg.to_vec();
    while let Some(dqt) = segments(&no_tables).into_iter().find(|s| s.marker == 0xDB) {
        no_tables = without(&no_tables, dqt);
    }
    let sos = find(jpeg, |m| m == 0xDA);
    let sof = find(jpeg, is_sof);
    // The first scan component's table selectors point at tables that were never defined.
    let undefined_huffman = with(jpeg, |j| j[sos.payload + 2] = 0xEE);
    // A frame type libjpeg does not implement (differential Huffman, SOF5).
    let unsupported_process = with(jpeg, |j| j[sof.at + 1] = 0xC5);
    let huge = with(jpeg, |j| j[sof.payload + 1..sof.payload + 5].copy_from_slice(&[0xFF; 4]));
    let cut = jpeg[..jpeg.len() / 2].to_vec();
    vec![
        ("no-quant-tables.jpg", no_tables),
        ("undefined-huffman.jpg", undefined_huffman),
        ("sof5.jpg", unsupported_process),
        ("huge-frame.jpg", huge),
        ("cut-in-half.jpg", cut),
    ]
}
