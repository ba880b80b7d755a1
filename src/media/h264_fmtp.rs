//! API.md "Codecs": H.264 with any profile, and "the answer keeps the
//! publisher's". str0m matches H.264 by profile and writes its own
//! `profile-level-id` into the answer (e.g. `42e01f` for an offered
//! `42c00c`); a strict publisher (an encoder that picked its level) then
//! sees a level it did not offer. This rewrites the answer's H.264 `fmtp`
//! lines to carry the offer's `profile-level-id` for the same payload type.

use std::collections::HashMap;

/// H.264 payload types of an SDP and their `profile-level-id`.
fn h264_profiles(sdp: &str) -> HashMap<String, String> {
    let mut h264_pts = Vec::new();
    let mut profiles = HashMap::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rtpmap) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, codec)) = rtpmap.split_once(' ')
            && codec.to_ascii_uppercase().starts_with("H264/")
        {
            h264_pts.push(pt.to_string());
        }
    }
    for line in sdp.lines().map(str::trim_end) {
        if let Some(fmtp) = line.strip_prefix("a=fmtp:")
            && let Some((pt, params)) = fmtp.split_once(' ')
            && h264_pts.iter().any(|p| p == pt)
            && let Some(id) = params
                .split(';')
                .find_map(|p| p.trim().strip_prefix("profile-level-id="))
        {
            profiles.insert(pt.to_string(), id.to_string());
        }
    }
    profiles
}

/// The answer with each H.264 payload type's `profile-level-id` taken from
/// the offer (payload types the offer does not have are left alone).
pub fn keep_offered_profiles(offer: &str, answer: &str) -> String {
    let offered = h264_profiles(offer);
    if offered.is_empty() {
        return answer.to_string();
    }
    let mut out = String::with_capacity(answer.len());
    for line in answer.split_inclusive('\n') {
        let text = line.trim_end_matches(['\r', '\n']);
        let eol = &line[text.len()..];
        let rewritten = text.strip_prefix("a=fmtp:").and_then(|fmtp| {
            let (pt, params) = fmtp.split_once(' ')?;
            let wanted = offered.get(pt)?;
            let params = params
                .split(';')
                .map(|p| match p.trim().strip_prefix("profile-level-id=") {
                    Some(_) => format!("profile-level-id={wanted}"),
                    None => p.trim().to_string(),
                })
                .collect::<Vec<_>>()
                .join(";");
            Some(format!("a=fmtp:{pt} {params}"))
        });
        match rewritten {
            Some(line) => {
                out.push_str(&line);
                out.push_str(eol);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_keeps_the_offered_level() {
        let offer = "m=video 9 UDP/TLS/RTP/SAVPF 108 109\r\na=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c00c\r\na=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\n";
        let answer = "m=video 9 UDP/TLS/RTP/SAVPF 108 109\r\na=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\n";
        let fixed = keep_offered_profiles(offer, answer);
        assert!(fixed.contains("a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c00c\r\n"), "{fixed}");
        assert!(fixed.contains("a=fmtp:109 apt=108\r\n"));
        assert_eq!(keep_offered_profiles("v=0\r\n", answer), answer);
    }
}
