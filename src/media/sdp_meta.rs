//! Track metadata in SDP (API.md "Track metadata (`i=` lines)"): the
//! ingress pre-processor that reads and strips media-level `i=` lines before
//! str0m sees an offer, and the egress annotation that writes them into the
//! offers the server generates.
//!
//! Pure string work, no I/O and no str0m types: the HTTP handlers call
//! [`prepare_offer`] on their actix threads, and whoever builds a server offer
//! (on the media worker thread) calls [`annotate_egress`] and
//! [`ensure_msid_semantic`] on str0m's output.
//!
//! str0m 0.25's media-section grammar is `m= [c=] [b=] a=*`, so an `i=` line
//! inside a media section makes the whole offer unparsable (see the
//! `str0m_rejects_media_level_i_and_accepts_prepared_offer` test). Worse,
//! its parser stops at the first line it cannot read without requiring the
//! end of input: an `i=` after a complete section's attributes silently
//! drops every later section. Hence `i=` is removed wherever it sits in a
//! section. The session-level `i=` is part of str0m's session grammar and is
//! left alone.

use vestibule_actors::snapshot::{MediaKind, Purpose};

/// Longest SDP line accepted, in bytes. Real lines stay far below this
/// (the longest are `a=fmtp` and `a=candidate`, a few hundred bytes); the cap
/// keeps a hostile offer from making us buffer and scan megabyte lines.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Vestibule's own attribute for the purpose, an alternative to the `i=`
/// purpose field for clients that cannot write `i=` lines.
const PURPOSE_ATTRIBUTE: &str = "a=x-vestibule-purpose";

/// Why an offer could not be pre-processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpMetaError {
    /// The first line is not `v=0`, so this is not an SDP.
    #[error("sdp does not start with v=0")]
    NotSdp,
    /// A line is longer than [`MAX_LINE_BYTES`].
    #[error("sdp line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
    },
    /// The SDP contains a NUL byte, which no SDP grammar allows.
    #[error("sdp contains a NUL byte")]
    NulByte,
}

impl SdpMetaError {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SdpMetaError::NotSdp => "not_sdp",
            SdpMetaError::LineTooLong { .. } => "line_too_long",
            SdpMetaError::NulByte => "nul_byte",
        }
    }
}

/// The media type of an `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// `m=application` (the data channel).
    Application,
    /// Anything else (`m=text`, `m=message`, garbage); str0m decides whether
    /// it is acceptable.
    Other,
}

impl SectionKind {
    /// Classifies the text after `m=`.
    fn from_media_line(rest: &str) -> Self {
        match rest.split(' ').next() {
            Some("audio") => SectionKind::Audio,
            Some("video") => SectionKind::Video,
            Some("application") => SectionKind::Application,
            _ => SectionKind::Other,
        }
    }

    /// The track kind, for sections that carry a track.
    pub fn media_kind(self) -> Option<MediaKind> {
        use MediaKind;
        match self {
            SectionKind::Audio => Some(MediaKind::Audio),
            SectionKind::Video => Some(MediaKind::Video),
            SectionKind::Application | SectionKind::Other => None,
        }
    }
}

/// What the pre-processor learned about one media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionMeta {
    /// 0-based position among the offer's `m=` lines.
    pub index: usize,
    /// The media type of the `m=` line.
    pub kind: SectionKind,
    /// The first `a=mid` value, if the section has one.
    pub mid: Option<String>,
    /// Guest unless an `i=` line or `a=x-vestibule-purpose` says main. Only
    /// the stream owner may publish main; enforcing that is the caller's job,
    /// since this module does not know who sent the offer.
    pub purpose: Purpose,
    /// Whether the `i=` line says the track starts muted.
    pub mute: bool,
}

/// An offer with media-level `i=` lines and `a=x-vestibule-purpose` removed,
/// ready for str0m, plus the metadata they carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedOffer {
    /// The cleaned SDP, CRLF line endings throughout.
    pub sdp: String,
    /// One entry per `m=` line, in order.
    pub sections: Vec<SectionMeta>,
}

impl PreparedOffer {
    /// Number of audio and video sections, the count that
    /// `session.max_media_sections` limits (data channels do not count).
    pub fn media_sections(&self) -> usize {
        self.sections
            .iter()
            .filter(|s| matches!(s.kind, SectionKind::Audio | SectionKind::Video))
            .count()
    }

    /// The section with this `a=mid`, if any.
    pub fn section_by_mid(&self, mid: &str) -> Option<&SectionMeta> {
        self.sections.iter().find(|s| s.mid.as_deref() == Some(mid))
    }
}

/// Reads and removes the track metadata of an ingress offer (WHIP body or a
/// client offer on the signal channel).
///
/// Accepts CRLF or LF endings and writes CRLF; blank lines are dropped.
/// Session-level lines, including a session `i=`, are kept.
pub fn prepare_offer(sdp: &str) -> Result<PreparedOffer, SdpMetaError> {
    // Checked up front over the whole input: one memchr pass is cheaper than
    // a per-line check, and a NUL anywhere means the input is not text.
    if sdp.contains('\0') {
        return Err(SdpMetaError::NulByte);
    }
    let mut out = String::with_capacity(sdp.len() + sdp.len() / 32);
    let mut sections: Vec<SectionMeta> = Vec::new();
    // Per-section parsing state; reset at every m= line.
    let mut seen_info = false;
    let mut purpose_from_attribute = false;

    for (n, raw) in sdp.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() > MAX_LINE_BYTES {
            return Err(SdpMetaError::LineTooLong { line: n + 1 });
        }
        if n == 0 && line != "v=0" {
            return Err(SdpMetaError::NotSdp);
        }
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("m=") {
            sections.push(SectionMeta {
                index: sections.len(),
                kind: SectionKind::from_media_line(rest),
                mid: None,
                purpose: Purpose::Guest,
                mute: false,
            });
            seen_info = false;
            purpose_from_attribute = false;
        } else if let Some(section) = sections.last_mut() {
            if let Some(info) = line.strip_prefix("i=") {
                // RFC 8866 allows one i= per section; should a client send
                // more, the first one counts and all are removed.
                if !seen_info {
                    let (purpose, mute) = parse_info(info);
                    // The explicit attribute wins over the i= purpose
                    // whichever comes first.
                    if !purpose_from_attribute {
                        section.purpose = purpose;
                    }
                    section.mute = mute;
                    seen_info = true;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(PURPOSE_ATTRIBUTE) {
                // `strip_prefix` alone would also match a longer attribute
                // name such as `a=x-vestibule-purposes`; those are kept.
                if rest.is_empty() || rest.starts_with(':') {
                    let value = rest.strip_prefix(':').unwrap_or("").trim();
                    if value.eq_ignore_ascii_case("main") {
                        section.purpose = Purpose::Main;
                        purpose_from_attribute = true;
                    } else if value.eq_ignore_ascii_case("guest") {
                        section.purpose = Purpose::Guest;
                        purpose_from_attribute = true;
                    }
                    continue;
                }
            }
            if let Some(mid) = line.strip_prefix("a=mid:")
                && section.mid.is_none()
            {
                section.mid = Some(mid.trim().to_owned());
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Ok(PreparedOffer { sdp: out, sections })
}

/// Parses the text after `i=`: `<purpose> <mute> <label>`. The label is
/// ignored. Unless both fields are `1` or `2` the whole line counts as
/// malformed and means `1 2` (guest, live): a line like `i=Camera 1` is a
/// free-text description from some other client, and reading its second
/// word as "muted" would be a guess.
fn parse_info(info: &str) -> (Purpose, bool) {
    let mut fields = info.split_ascii_whitespace();
    match (fields.next(), fields.next()) {
        (Some(purpose @ ("1" | "2")), Some(mute @ ("1" | "2"))) => {
            let purpose = if purpose == "2" {
                Purpose::Main
            } else {
                Purpose::Guest
            };
            (purpose, mute == "1")
        }
        _ => (Purpose::Guest, false),
    }
}

/// The metadata the server writes into an egress media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressLabel {
    /// The purpose the control plane stored for the track.
    pub purpose: Purpose,
    /// The publisher's current mute state.
    pub mute: bool,
    /// The publisher's authenticated userId.
    pub user_id: String,
    /// `<stream id> <track id>` for the section's `a=msid:` line, replacing
    /// what str0m wrote (a reused m-line keeps its first msid otherwise).
    pub msid: Option<String>,
}

impl EgressLabel {
    /// Appends `i=<purpose> <mute> <userId>` without a line ending.
    fn write_info_line(&self, out: &mut String) {
        out.push_str("i=");
        // Purpose codes are single digits.
        out.push(char::from(b'0' + self.purpose.code()));
        out.push_str(if self.mute { " 1 " } else { " 2 " });
        if self.user_id.is_empty() {
            // RFC 8866 text is at least one byte, and clients split on
            // spaces, so an empty label must not leave a trailing space.
            out.push('-');
        }
        // A userId comes from a token, not from us: a CR or LF in it would
        // inject SDP lines into every subscriber's offer.
        out.extend(
            self.user_id
                .chars()
                .map(|c| if c.is_control() { '_' } else { c }),
        );
    }
}

/// Writes exactly one `i=` line directly after the `m=` line of every media
/// section whose `a=mid` has a label (RFC 8866 order: `m=`, `i=`, `c=`, …),
/// removing any `i=` the section already had. Sections without a label, and
/// every other byte, including the line endings, are left as they are.
pub fn annotate_egress(sdp: &str, label_of: impl Fn(&str) -> Option<EgressLabel>) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    // The a=mid that names a section comes after its m= line, so each
    // section is buffered (as borrowed lines) until the next m= or the end.
    let mut section: Vec<&str> = Vec::new();
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush_section(&mut out, &section, &label_of);
            section.clear();
            section.push(line);
        } else if section.is_empty() {
            out.push_str(line);
        } else {
            section.push(line);
        }
    }
    flush_section(&mut out, &section, &label_of);
    out
}

/// Writes one buffered media section (its first line is the `m=` line).
fn flush_section(
    out: &mut String,
    section: &[&str],
    label_of: &impl Fn(&str) -> Option<EgressLabel>,
) {
    let Some((&m_line, rest)) = section.split_first() else {
        return;
    };
    let label = rest
        .iter()
        .find_map(|l| content(l).strip_prefix("a=mid:"))
        .and_then(|mid| label_of(mid.trim()));
    let Some(label) = label else {
        section.iter().for_each(|l| out.push_str(l));
        return;
    };
    let eol = line_ending(m_line);
    out.push_str(m_line);
    if eol.is_empty() {
        // Unreachable for a labelled section (its a=mid follows the m=
        // line, so the m= line ended in a newline), but cheap to get right.
        out.push_str("\r\n");
    }
    label.write_info_line(out);
    out.push_str(if eol.is_empty() { "\r\n" } else { eol });
    let mut msid_written = false;
    for line in rest {
        let text = content(line);
        if text.starts_with("i=") {
            continue;
        }
        // Legacy ssrc-level msid (str0m writes its own stream ids there)
        // would contradict the a=msid we set; a=msid is what clients use.
        if label.msid.is_some() && text.starts_with("a=ssrc:") && text.contains(" msid:") {
            continue;
        }
        if let Some(msid) = &label.msid
            && text.starts_with("a=msid:")
        {
            if !msid_written {
                out.push_str("a=msid:");
                out.push_str(msid);
                out.push_str(if line_ending(line).is_empty() {
                    "\r\n"
                } else {
                    line_ending(line)
                });
                msid_written = true;
            }
            continue;
        }
        out.push_str(line);
    }
    if let Some(msid) = label.msid.as_ref().filter(|_| !msid_written) {
        out.push_str("a=msid:");
        out.push_str(msid);
        out.push_str("\r\n");
    }
}

/// Makes the session level carry exactly `a=msid-semantic: WMS *` (API.md:
/// offers and answers carry it; some browsers only group tracks into
/// streams when it is present). str0m's own `WMS <ids>` line is replaced:
/// its ids are not the msid stream ids we write per m-line.
///
/// It goes after the `t=` line and any `r=`/`z=`/`k=` lines that belong
/// with it, where session attributes start. Without a `t=` line it goes
/// before the first `m=` line. Everything else is kept byte-for-byte.
pub fn ensure_msid_semantic(sdp: &str) -> String {
    if sdp
        .split_inclusive('\n')
        .any(|l| content(l).starts_with("a=msid-semantic"))
    {
        return sdp
            .split_inclusive('\n')
            .map(|l| {
                if content(l).starts_with("a=msid-semantic") {
                    format!("a=msid-semantic: WMS *{}", line_ending(l))
                } else {
                    l.to_string()
                }
            })
            .collect();
    }
    let mut out = String::with_capacity(sdp.len() + 32);
    let mut eol = "\r\n";
    let mut after_time = false;
    let mut inserted = false;
    for line in sdp.split_inclusive('\n') {
        if !inserted {
            let text = content(line);
            let ends_session = text.starts_with("m=");
            let in_time_block = after_time
                && (text.starts_with("r=") || text.starts_with("z=") || text.starts_with("k="));
            if ends_session || (after_time && !in_time_block) {
                out.push_str("a=msid-semantic: WMS *");
                out.push_str(eol);
                inserted = true;
            } else if text.starts_with("t=") {
                after_time = true;
                if !line_ending(line).is_empty() {
                    eol = line_ending(line);
                }
            }
        }
        out.push_str(line);
    }
    if !inserted {
        // The session part runs to the end of the input.
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(eol);
        }
        out.push_str("a=msid-semantic: WMS *");
        out.push_str(eol);
    }
    out
}

/// A line without its ending.
fn content(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// The ending of a line from `split_inclusive('\n')`: CRLF, LF or none.
fn line_ending(line: &str) -> &'static str {
    if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    }
}

/// Makes every enabled media section carry our host candidates followed by
/// `a=end-of-candidates`. str0m writes candidates into the first section
/// only; with BUNDLE that is enough for browsers, but some stacks (aiortc
/// with max-bundle) read the candidates of the last bundled section. We are
/// ICE-lite with host candidates only, so gathering is always complete.
pub fn complete_candidates(sdp: &str) -> String {
    let lines: Vec<&str> = sdp
        .split("\r\n")
        .flat_map(|l| l.split('\n'))
        .filter(|l| !l.is_empty())
        .collect();
    let candidates: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    if candidates.is_empty() {
        return sdp.to_string();
    }
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 80 * 4);
    let mut in_section = false;
    let mut enabled = false;
    let finish = |out: &mut String, in_section: bool, enabled: bool| {
        if in_section && enabled {
            for c in &candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in lines {
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if let Some(m) = line.strip_prefix("m=") {
            finish(&mut out, in_section, enabled);
            in_section = true;
            enabled = m.split_whitespace().nth(1).is_some_and(|port| port != "0");
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    finish(&mut out, in_section, enabled);
    out
}

/// Keeps only the payload types in `allowed_of(mid)` (a section's source
/// codec and its RTX) in every section that has such a list: the `m=`
/// format list and the `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines of the
/// others go. API.md: egress m-lines carry only the source codec + RTX
/// (about 1 KB each), which keeps large lobbies' offers small.
pub fn restrict_codecs(sdp: &str, allowed_of: impl Fn(&str) -> Option<Vec<u8>>) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut section: Vec<&str> = Vec::new();
    let flush = |out: &mut String, section: &[&str]| {
        let allowed = section
            .iter()
            .find_map(|l| content(l).strip_prefix("a=mid:"))
            .and_then(|mid| allowed_of(mid.trim()));
        let Some(allowed) = allowed.filter(|a| !a.is_empty()) else {
            section.iter().for_each(|l| out.push_str(l));
            return;
        };
        let keeps = |pt: &str| pt.parse::<u8>().is_ok_and(|pt| allowed.contains(&pt));
        for line in section {
            let text = content(line);
            if let Some(m) = text.strip_prefix("m=") {
                let mut parts: Vec<&str> = m.split(' ').collect();
                if parts.len() > 3 {
                    let formats: Vec<&str> = parts
                        .split_off(3)
                        .into_iter()
                        .filter(|f| keeps(f))
                        .collect();
                    parts.extend(formats);
                }
                out.push_str("m=");
                out.push_str(&parts.join(" "));
                out.push_str(line_ending(line));
                continue;
            }
            let pt_of = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .find_map(|prefix| text.strip_prefix(prefix))
                .and_then(|rest| rest.split([' ', '/']).next());
            if pt_of.is_some_and(|pt| pt != "*" && !keeps(pt)) {
                continue;
            }
            out.push_str(line);
        }
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut out, &section);
            section.clear();
            section.push(line);
        } else if section.is_empty() {
            out.push_str(line);
        } else {
            section.push(line);
        }
    }
    flush(&mut out, &section);
    out
}

/// The `a=max-message-size` of an SDP (the SCTP message limit of its data
/// channels), if it states one.
pub fn max_message_size(sdp: &str) -> Option<usize> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=max-message-size:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The enabled (port not 0) audio/video sections of an SDP whose direction
/// attribute is one of `directions` (e.g. `["a=recvonly", "a=sendrecv"]`),
/// as (mid, kind).
pub fn sections_in_direction(sdp: &str, directions: &[&str]) -> Vec<(String, MediaKind)> {
    use MediaKind;
    let mut out = Vec::new();
    // (kind, enabled, mid, direction matches) of the section being read.
    let mut section: Option<(MediaKind, bool, Option<String>, bool)> = None;
    let mut finish = |section: Option<(MediaKind, bool, Option<String>, bool)>| {
        if let Some((kind, true, Some(mid), true)) = section {
            out.push((mid, kind));
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            finish(section.take());
            let mut parts = m.split_whitespace();
            let kind = match parts.next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
            let enabled = parts.next().is_some_and(|port| port != "0");
            section = kind.map(|k| (k, enabled, None, false));
        } else if let Some(s) = section.as_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                s.2 = Some(mid.to_string());
            } else if directions.contains(&line) {
                s.3 = true;
            }
        }
    }
    finish(section);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use MediaKind;

    const FINGERPRINT: &str = "sha-256 \
        6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:\
        DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

    /// A Chrome-like sendonly WHIP offer: BUNDLE of opus, VP8 + rtx and a
    /// data channel, with `i=2 2 x` after the audio and video m= lines.
    fn chrome_offer_with_info() -> String {
        let transport = format!(
            "c=IN IP4 0.0.0.0\r\n\
             a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n\
             a=ice-ufrag:Ab1C\r\n\
             a=ice-pwd:0123456789abcdefghijklmn\r\n\
             a=ice-options:trickle\r\n\
             a=fingerprint:{FINGERPRINT}\r\n\
             a=setup:actpass\r\n"
        );
        format!(
            "v=0\r\n\
             o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
             s=-\r\n\
             i=a session description stays\r\n\
             t=0 0\r\n\
             a=group:BUNDLE 0 1 2\r\n\
             a=extmap-allow-mixed\r\n\
             a=msid-semantic: WMS stream\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             i=2 2 x\r\n\
             {transport}\
             a=mid:0\r\n\
             a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
             a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
             a=sendonly\r\n\
             a=msid:stream audio0\r\n\
             a=rtcp-mux\r\n\
             a=rtpmap:111 opus/48000/2\r\n\
             a=rtcp-fb:111 transport-cc\r\n\
             a=fmtp:111 minptime=10;useinbandfec=1\r\n\
             a=ssrc:1001 cname:vestibuletest\r\n\
             a=ssrc:1001 msid:stream audio0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
             i=2 2 x\r\n\
             {transport}\
             a=mid:1\r\n\
             a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
             a=sendonly\r\n\
             a=msid:stream video0\r\n\
             a=rtcp-mux\r\n\
             a=rtcp-rsize\r\n\
             a=rtpmap:96 VP8/90000\r\n\
             a=rtcp-fb:96 goog-remb\r\n\
             a=rtcp-fb:96 transport-cc\r\n\
             a=rtcp-fb:96 ccm fir\r\n\
             a=rtcp-fb:96 nack\r\n\
             a=rtcp-fb:96 nack pli\r\n\
             a=rtpmap:97 rtx/90000\r\n\
             a=fmtp:97 apt=96\r\n\
             a=ssrc-group:FID 2001 2002\r\n\
             a=ssrc:2001 cname:vestibuletest\r\n\
             a=ssrc:2001 msid:stream video0\r\n\
             a=ssrc:2002 cname:vestibuletest\r\n\
             a=ssrc:2002 msid:stream video0\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
             {transport}\
             a=mid:2\r\n\
             a=sctp-port:5000\r\n\
             a=max-message-size:262144\r\n"
        )
    }

    fn media_level_info_lines(sdp: &str) -> usize {
        let first_m = sdp.find("\r\nm=").unwrap_or(sdp.len());
        sdp[first_m..]
            .split("\r\n")
            .filter(|l| l.starts_with("i="))
            .count()
    }

    #[test]
    fn str0m_rejects_media_level_i_and_accepts_prepared_offer() {
        use str0m::change::SdpOffer;
        let raw = chrome_offer_with_info();
        assert!(
            SdpOffer::from_sdp_string(&raw).is_err(),
            "str0m 0.25 accepted a media-level i= line; the pre-processor may be unnecessary"
        );
        let prepared = prepare_offer(&raw).expect("fixture is a valid offer");
        assert_eq!(media_level_info_lines(&prepared.sdp), 0);
        assert!(
            prepared
                .sdp
                .contains("\r\ni=a session description stays\r\n")
        );
        let parsed = SdpOffer::from_sdp_string(&prepared.sdp);
        assert!(parsed.is_ok(), "cleaned offer rejected: {parsed:?}");
    }

    /// str0m 0.25 does not require the parse to reach the end of the input:
    /// an `i=` after a complete section's attributes ends the parse there and
    /// every later m-line is silently dropped. So `i=` must be removed
    /// wherever it sits in a section, not only right after `m=`.
    #[test]
    fn str0m_silently_truncates_at_a_late_i_line_and_prepare_prevents_it() {
        use str0m::change::SdpOffer;
        let m_lines = |offer: &SdpOffer| offer.to_string().matches("\r\nm=").count();
        let late = chrome_offer_with_info().replace("i=2 2 x\r\n", "").replace(
            "a=ssrc:1001 msid:stream audio0\r\n",
            "a=ssrc:1001 msid:stream audio0\r\ni=2 1 late\r\n",
        );
        let raw = SdpOffer::from_sdp_string(&late).expect("str0m 0.25 accepts the prefix");
        assert_eq!(m_lines(&raw), 1, "video and data channel were dropped");
        let prepared = prepare_offer(&late).expect("valid offer");
        assert!(prepared.sections[0].mute);
        let cleaned = SdpOffer::from_sdp_string(&prepared.sdp).expect("cleaned offer parses");
        assert_eq!(m_lines(&cleaned), 3);
    }

    #[test]
    fn prepared_chrome_offer_yields_section_metadata() {
        let prepared = prepare_offer(&chrome_offer_with_info()).expect("valid offer");
        let kinds: Vec<_> = prepared.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Audio,
                SectionKind::Video,
                SectionKind::Application
            ]
        );
        let mids: Vec<_> = prepared.sections.iter().map(|s| s.mid.as_deref()).collect();
        assert_eq!(mids, [Some("0"), Some("1"), Some("2")]);
        assert_eq!(
            prepared
                .sections
                .iter()
                .map(|s| s.index)
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(prepared.sections[0].purpose, Purpose::Main);
        assert_eq!(prepared.sections[1].purpose, Purpose::Main);
        assert!(!prepared.sections[0].mute);
        // No i= in the data channel section: the defaults.
        assert_eq!(prepared.sections[2].purpose, Purpose::Guest);
        assert_eq!(prepared.media_sections(), 2);
        assert_eq!(
            prepared.section_by_mid("1").map(|s| s.kind),
            Some(SectionKind::Video)
        );
        assert!(prepared.section_by_mid("9").is_none());
    }

    fn offer(media: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{media}")
    }

    #[test]
    fn info_fields_set_purpose_and_mute() {
        let cases = [
            ("i=1 1 cam", Purpose::Guest, true),
            ("i=1 2 cam", Purpose::Guest, false),
            ("i=2 1 program", Purpose::Main, true),
            ("i=2 2", Purpose::Main, false),
            ("i=  2   1  spaced", Purpose::Main, true),
        ];
        for (info, purpose, mute) in cases {
            let sdp = offer(&format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{info}\r\na=mid:a\r\n"
            ));
            let prepared = prepare_offer(&sdp).expect("valid");
            let s = &prepared.sections[0];
            assert_eq!((s.purpose, s.mute), (purpose, mute), "{info}");
            assert!(!prepared.sdp.contains("\r\ni="), "{info}");
        }
    }

    #[test]
    fn malformed_or_missing_info_means_guest_and_live() {
        for info in [
            "i=",
            "i=hello world",
            "i=3 3 x",
            "i=x 1",
            "i=0 0",
            "i=22 11",
        ] {
            let sdp = offer(&format!("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n{info}\r\n"));
            let s = prepare_offer(&sdp).expect("valid").sections[0].clone();
            assert_eq!(s.purpose, Purpose::Guest, "{info}");
            assert!(!s.mute, "{info}");
        }
        let sdp = offer("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n");
        let s = prepare_offer(&sdp).expect("valid").sections[0].clone();
        assert_eq!(
            (s.purpose, s.mute, s.mid.as_deref()),
            (Purpose::Guest, false, Some("v"))
        );
    }

    #[test]
    fn only_the_first_info_line_counts_and_all_are_removed() {
        let sdp = offer("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\ni=2 1 a\r\ni=1 2 b\r\na=mid:0\r\n");
        let prepared = prepare_offer(&sdp).expect("valid");
        assert_eq!(prepared.sections[0].purpose, Purpose::Main);
        assert!(prepared.sections[0].mute);
        assert_eq!(media_level_info_lines(&prepared.sdp), 0);
    }

    #[test]
    fn purpose_attribute_is_read_removed_and_wins_over_info() {
        let sdp = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=x-vestibule-purpose:main\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=2 1 x\r\na=x-vestibule-purpose:guest\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=x-vestibule-purpose:MAIN\r\ni=1 2 x\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=2 2 x\r\na=x-vestibule-purpose:bogus\r\n\
             a=x-vestibule-purposes:main\r\n",
        );
        let prepared = prepare_offer(&sdp).expect("valid");
        let purposes: Vec<_> = prepared.sections.iter().map(|s| s.purpose).collect();
        assert_eq!(
            purposes,
            [Purpose::Main, Purpose::Guest, Purpose::Main, Purpose::Main]
        );
        // The attribute only sets the purpose; mute still comes from i=.
        assert!(prepared.sections[1].mute);
        assert!(!prepared.sdp.contains("a=x-vestibule-purpose:"));
        // A different attribute that merely shares the prefix is kept.
        assert!(prepared.sdp.contains("a=x-vestibule-purposes:main\r\n"));
    }

    #[test]
    fn session_level_info_and_attribute_are_left_alone() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\ni=2 1 session\r\nt=0 0\r\n\
                   a=x-vestibule-purpose:main\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        let prepared = prepare_offer(sdp).expect("valid");
        assert_eq!(prepared.sdp, sdp);
        assert_eq!(prepared.sections[0].purpose, Purpose::Guest);
        assert!(!prepared.sections[0].mute);
    }

    #[test]
    fn lf_input_becomes_crlf_and_blank_lines_go() {
        let sdp = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\n\nm=audio 9 UDP/TLS/RTP/SAVPF 111\ni=2 2 x\na=mid:0\n";
        let prepared = prepare_offer(sdp).expect("valid");
        assert_eq!(
            prepared.sdp,
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        );
        assert_eq!(prepared.sections[0].purpose, Purpose::Main);
        // Mixed endings and a missing final newline.
        let mixed = "v=0\r\ns=-\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v";
        let prepared = prepare_offer(mixed).expect("valid");
        assert_eq!(
            prepared.sdp,
            "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n"
        );
        assert_eq!(prepared.sections[0].mid.as_deref(), Some("v"));
    }

    #[test]
    fn section_kinds_and_media_count() {
        let sdp = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
             m=text 9 RTP/AVP 98\r\n\
             m=audiox 9 RTP/AVP 0\r\n\
             m=\r\n",
        );
        let prepared = prepare_offer(&sdp).expect("valid");
        let kinds: Vec<_> = prepared.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Audio,
                SectionKind::Video,
                SectionKind::Application,
                SectionKind::Other,
                SectionKind::Other,
                SectionKind::Other,
            ]
        );
        assert_eq!(prepared.media_sections(), 2);
        assert_eq!(SectionKind::Audio.media_kind(), Some(MediaKind::Audio));
        assert_eq!(SectionKind::Video.media_kind(), Some(MediaKind::Video));
        assert_eq!(SectionKind::Application.media_kind(), None);
    }

    #[test]
    fn no_media_sections_is_fine() {
        let sdp = offer("a=ice-lite\r\n");
        let prepared = prepare_offer(&sdp).expect("valid");
        assert!(prepared.sections.is_empty());
        assert_eq!(prepared.media_sections(), 0);
        assert_eq!(prepared.sdp, sdp);
        assert_eq!(prepare_offer("v=0").expect("valid").sdp, "v=0\r\n");
    }

    #[test]
    fn rejects_what_is_not_sdp() {
        for bad in [
            "",
            "\r\n",
            "v=1\r\n",
            " v=0\r\n",
            "o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n",
            "hello",
        ] {
            assert_eq!(prepare_offer(bad), Err(SdpMetaError::NotSdp), "{bad:?}");
        }
        assert_eq!(prepare_offer("v=0\r\ns=\0\r\n"), Err(SdpMetaError::NulByte));
        let long = format!("v=0\r\ns=-\r\na={}\r\n", "x".repeat(MAX_LINE_BYTES));
        assert_eq!(
            prepare_offer(&long),
            Err(SdpMetaError::LineTooLong { line: 3 })
        );
        let just_fits = format!("v=0\r\na={}\r\n", "x".repeat(MAX_LINE_BYTES - 2));
        assert!(prepare_offer(&just_fits).is_ok());
        assert_eq!(SdpMetaError::NotSdp.reason(), "not_sdp");
        assert_eq!(SdpMetaError::NulByte.reason(), "nul_byte");
        assert_eq!(
            SdpMetaError::LineTooLong { line: 1 }.reason(),
            "line_too_long"
        );
    }

    #[test]
    fn ten_thousand_media_lines() {
        let mut sdp = offer("");
        for i in 0..10_000 {
            sdp.push_str(&format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=2 1 x\r\na=mid:{i}\r\n"
            ));
        }
        let prepared = prepare_offer(&sdp).expect("valid");
        assert_eq!(prepared.sections.len(), 10_000);
        assert_eq!(prepared.media_sections(), 10_000);
        assert_eq!(prepared.sections[9_999].mid.as_deref(), Some("9999"));
        assert!(
            prepared
                .sections
                .iter()
                .all(|s| s.purpose == Purpose::Main && s.mute)
        );
        let label = |_: &str| {
            Some(EgressLabel {
                purpose: Purpose::Guest,
                mute: false,
                user_id: "u".into(),
                msid: None,
            })
        };
        let annotated = annotate_egress(&prepared.sdp, label);
        assert_eq!(annotated.matches("\r\ni=1 2 u\r\n").count(), 10_000);
    }

    /// A tiny deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn garbage_never_panics_and_prepare_is_idempotent() {
        const PIECES: [&str; 24] = [
            "v=0",
            "\r\n",
            "\n",
            "\r",
            "m=",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "m=video",
            "i=",
            "i=2 1 x",
            "i=2",
            "a=mid:",
            "a=mid:0",
            "a=x-vestibule-purpose",
            "a=x-vestibule-purpose:main",
            ":",
            " ",
            "t=0 0",
            "a=msid-semantic",
            "\0",
            "é",
            "🦀",
            "\u{feff}",
            "z=",
            "\t",
        ];
        let mut rng = XorShift(0x5eed_cafe_f00d_d00d);
        for round in 0..5_000 {
            let mut s = String::new();
            if round % 2 == 0 {
                s.push_str("v=0\r\n");
            }
            for _ in 0..rng.below(40) {
                if rng.below(4) == 0 {
                    // Any scalar value, including controls and surrogates'
                    // neighbours.
                    let c = char::from_u32(rng.next() as u32 % 0x11_0000).unwrap_or('?');
                    s.push(c);
                } else {
                    s.push_str(PIECES[rng.below(PIECES.len())]);
                }
            }
            let label = |mid: &str| {
                mid.len().is_multiple_of(2).then(|| EgressLabel {
                    purpose: Purpose::Main,
                    mute: true,
                    user_id: mid.to_owned(),
                    msid: None,
                })
            };
            let _ = annotate_egress(&s, label);
            let _ = ensure_msid_semantic(&s);
            if let Ok(prepared) = prepare_offer(&s) {
                let again = prepare_offer(&prepared.sdp).expect("prepared output is an sdp");
                assert_eq!(again.sdp, prepared.sdp, "{s:?}");
                assert_eq!(again.sections.len(), prepared.sections.len(), "{s:?}");
                assert!(prepared.sdp.split("\r\n").all(|l| !l.contains('\n')));
            }
        }
    }

    fn label(purpose: Purpose, mute: bool, user_id: &str) -> Option<EgressLabel> {
        Some(EgressLabel {
            purpose,
            mute,
            user_id: user_id.to_owned(),
            msid: None,
        })
    }

    #[test]
    fn annotate_inserts_one_info_line_after_each_labelled_m_line() {
        let sdp = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=1 2 stale\r\nc=IN IP4 0.0.0.0\r\ni=2 2 dup\r\na=mid:1\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=keep me\r\na=mid:unlabelled\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n",
        );
        let annotated = annotate_egress(&sdp, |mid| match mid {
            "0" => label(Purpose::Guest, true, "alice"),
            "1" => label(Purpose::Main, false, "bob"),
            _ => None,
        });
        let expected = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\ni=1 1 alice\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=2 2 bob\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\ni=keep me\r\na=mid:unlabelled\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n",
        );
        assert_eq!(annotated, expected);
    }

    #[test]
    fn annotate_keeps_everything_else_byte_for_byte() {
        let raw = chrome_offer_with_info();
        assert_eq!(annotate_egress(&raw, |_| None), raw);
        let lf = "v=0\ns=-\nm=audio 9 X 0\na=mid:0\n";
        assert_eq!(
            annotate_egress(lf, |_| label(Purpose::Guest, false, "u")),
            "v=0\ns=-\nm=audio 9 X 0\ni=1 2 u\na=mid:0\n"
        );
        // No trailing newline at the end of the input stays that way.
        assert_eq!(
            annotate_egress("v=0\r\nm=audio 9 X 0\r\na=mid:0", |_| label(
                Purpose::Guest,
                false,
                "u"
            )),
            "v=0\r\nm=audio 9 X 0\r\ni=1 2 u\r\na=mid:0"
        );
        // Session-level i= is not part of any section.
        let session = "v=0\r\ni=session\r\nm=audio 9 X 0\r\na=mid:0\r\n";
        assert_eq!(
            annotate_egress(session, |_| label(Purpose::Main, true, "u")),
            "v=0\r\ni=session\r\nm=audio 9 X 0\r\ni=2 1 u\r\na=mid:0\r\n"
        );
    }

    #[test]
    fn annotate_neutralises_control_characters_in_the_user_id() {
        let sdp = "v=0\r\nm=audio 9 X 0\r\na=mid:0\r\n";
        let out = annotate_egress(sdp, |_| label(Purpose::Guest, false, "eve\r\na=evil\0"));
        assert_eq!(
            out,
            "v=0\r\nm=audio 9 X 0\r\ni=1 2 eve__a=evil_\r\na=mid:0\r\n"
        );
        let out = annotate_egress(sdp, |_| label(Purpose::Guest, false, ""));
        assert_eq!(out, "v=0\r\nm=audio 9 X 0\r\ni=1 2 -\r\na=mid:0\r\n");
    }

    #[test]
    fn annotated_metadata_reads_back_through_prepare() {
        let prepared = prepare_offer(&chrome_offer_with_info()).expect("valid");
        let annotated = annotate_egress(&prepared.sdp, |mid| match mid {
            "0" => label(Purpose::Main, true, "owner"),
            "1" => label(Purpose::Guest, false, "guest"),
            _ => None,
        });
        let again = prepare_offer(&annotated).expect("valid");
        assert_eq!(again.sdp, prepared.sdp);
        assert_eq!(
            (again.sections[0].purpose, again.sections[0].mute),
            (Purpose::Main, true)
        );
        assert_eq!(
            (again.sections[1].purpose, again.sections[1].mute),
            (Purpose::Guest, false)
        );
    }

    #[test]
    fn msid_semantic_is_added_after_the_time_line() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 X 0\r\n";
        assert_eq!(
            ensure_msid_semantic(sdp),
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=msid-semantic: WMS *\r\na=group:BUNDLE 0\r\nm=audio 9 X 0\r\n"
        );
        let with_repeat = "v=0\nt=0 0\nr=7d 1h 0 25h\nm=audio 9 X 0\n";
        assert_eq!(
            ensure_msid_semantic(with_repeat),
            "v=0\nt=0 0\nr=7d 1h 0 25h\na=msid-semantic: WMS *\nm=audio 9 X 0\n"
        );
        assert_eq!(
            ensure_msid_semantic("v=0\r\nt=0 0"),
            "v=0\r\nt=0 0\r\na=msid-semantic: WMS *\r\n"
        );
        assert_eq!(
            ensure_msid_semantic("v=0\r\ns=-\r\nm=audio 9 X 0\r\n"),
            "v=0\r\ns=-\r\na=msid-semantic: WMS *\r\nm=audio 9 X 0\r\n"
        );
    }

    #[test]
    fn msid_semantic_is_normalised_when_present() {
        let raw = chrome_offer_with_info();
        let fixed = ensure_msid_semantic(&raw);
        assert_eq!(
            fixed,
            raw.replace("a=msid-semantic: WMS stream", "a=msid-semantic: WMS *")
        );
        let compact = "v=0\r\nt=0 0\r\na=msid-semantic:WMS *\r\n";
        assert_eq!(
            ensure_msid_semantic(compact),
            "v=0\r\nt=0 0\r\na=msid-semantic: WMS *\r\n"
        );
    }

    #[test]
    fn msid_semantic_result_still_parses_in_str0m() {
        let prepared = prepare_offer(&chrome_offer_with_info()).expect("valid");
        let without: String = prepared
            .sdp
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("a=msid-semantic"))
            .collect();
        let with = ensure_msid_semantic(&without);
        assert!(with.contains("\r\nt=0 0\r\na=msid-semantic: WMS *\r\n"));
        assert!(str0m::change::SdpOffer::from_sdp_string(&with).is_ok());
    }

    #[test]
    fn candidates_are_spread_to_every_enabled_section() {
        let answer = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 X 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host\r\n\
                      m=video 0 X 96\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        let out = complete_candidates(answer);
        assert_eq!(out.matches("a=candidate:").count(), 2, "{out}");
        assert_eq!(out.matches("a=end-of-candidates").count(), 2);
        let video = out
            .split("m=video")
            .nth(1)
            .and_then(|v| v.split("m=application").next())
            .unwrap_or_default();
        assert!(
            !video.contains("a=candidate"),
            "rejected section left alone"
        );
        assert!(out.ends_with("a=end-of-candidates\r\n"));
        assert_eq!(
            complete_candidates("v=0\r\nm=audio 9 X 0\r\n"),
            "v=0\r\nm=audio 9 X 0\r\n"
        );
    }

    #[test]
    fn restrict_codecs_keeps_the_source_codec_and_its_rtx() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\na=mid:1\r\n\
                   a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
                   a=rtpmap:102 H264/90000\r\na=fmtp:102 profile-level-id=42e01f\r\na=rtpmap:103 rtx/90000\r\n\
                   a=fmtp:103 apt=102\r\na=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=rtpmap:111 opus/48000/2\r\n";
        let out = restrict_codecs(sdp, |mid| (mid == "1").then(|| vec![96, 97]));
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"),
            "{out}"
        );
        assert!(!out.contains("H264") && !out.contains("apt=102"));
        assert!(out.contains("a=rtcp-fb:96 nack") && out.contains("a=fmtp:97 apt=96"));
        assert!(out.contains("a=sendonly"));
        assert!(
            out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=rtpmap:111 opus/48000/2"),
            "untouched"
        );
    }
}
