//! SDP from the network: WHIP offers and client offers on the signal channel
//! (`sdp_meta::prepare_offer`, then str0m's parser on its output), the egress
//! rewriters applied to SDP (`annotate_egress`, `ensure_msid_semantic`,
//! `complete_candidates`) and the answer reader (`ingress::receiving_sections`).
#![no_main]

use libfuzzer_sys::fuzz_target;
// Moved from `media::peer` to `media::ingress` in the worker split.
use vestibule::media::ingress::receiving_sections;
use vestibule::media::sdp_meta::{
    EgressLabel, PreparedOffer, annotate_egress, complete_candidates, ensure_msid_semantic,
    prepare_offer,
};

/// The `a=msid:` value written into labelled sections by the second
/// annotation pass (server-made ids, so plain text).
const MSID: &str = "vestibule-p0 t0";

/// The label the egress side would write for `mid`: the offered section's
/// purpose with its mute state flipped, and the mid (which may hold any
/// character) as the user id, so the control-character escaping runs too.
fn label_of(prepared: &PreparedOffer, mid: &str, msid: bool) -> Option<EgressLabel> {
    prepared.section_by_mid(mid).map(|s| EgressLabel {
        purpose: s.purpose,
        mute: !s.mute,
        user_id: mid.to_owned(),
        msid: msid.then(|| MSID.to_owned()),
    })
}

/// API.md "Track metadata", egress: every labelled section (here: every
/// section with an `a=mid`) has exactly one `i=` line, directly after its
/// `m=` line, and exactly one `a=msid:` line, ours.
fn check_egress_sections(annotated: &str) {
    let lines: Vec<&str> = annotated
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("m="))
        .collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let section = &lines[start..end];
        if !section.iter().any(|l| l.starts_with("a=mid:")) {
            continue;
        }
        assert!(
            section.get(1).is_some_and(|l| l.starts_with("i=")),
            "no i= line right after the m= line: {section:?}"
        );
        assert_eq!(
            section.iter().filter(|l| l.starts_with("i=")).count(),
            1,
            "{section:?}"
        );
        let msids: Vec<&&str> = section
            .iter()
            .filter(|l| l.starts_with("a=msid:"))
            .collect();
        assert_eq!(msids.len(), 1, "{section:?}");
        assert_eq!(msids[0].strip_prefix("a=msid:"), Some(MSID), "{section:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Runs on whatever the remote side answered, cleaned or not.
    let _ = receiving_sections(&text);

    let Ok(prepared) = prepare_offer(&text) else {
        return;
    };

    // Properties the sdp_meta unit tests state: the cleaned SDP is CRLF
    // throughout, and preparing it again changes nothing but the metadata
    // (whose i= lines and attributes are gone by then).
    assert!(prepared.sdp.split("\r\n").all(|l| !l.contains('\n')));
    let again = prepare_offer(&prepared.sdp).expect("prepared output is an sdp");
    assert_eq!(again.sdp, prepared.sdp, "prepare_offer is not idempotent");
    let shape = |p: &PreparedOffer| {
        p.sections
            .iter()
            .map(|s| (s.index, s.kind, s.mid.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&again), shape(&prepared));
    let _ = prepared.media_sections();

    // What the WHIP handler and the worker hand to str0m.
    if let Ok(offer) = str0m::change::SdpOffer::from_sdp_string(&prepared.sdp) {
        let _ = offer.to_sdp_string();
    }

    // Egress: i= lines written by annotate_egress read back through
    // prepare_offer, and stripping them gives the cleaned SDP again.
    let annotated = annotate_egress(&prepared.sdp, |mid| label_of(&prepared, mid, false));
    let read_back = prepare_offer(&annotated).expect("annotated output is an sdp");
    assert_eq!(read_back.sdp, prepared.sdp, "annotate + prepare lost bytes");
    assert_eq!(read_back.sections.len(), prepared.sections.len());
    for (got, offered) in read_back.sections.iter().zip(&prepared.sections) {
        let expected = offered
            .mid
            .as_deref()
            .and_then(|m| label_of(&prepared, m, false));
        if let Some(label) = expected {
            assert_eq!((got.purpose, got.mute), (label.purpose, label.mute));
        }
    }

    // With an msid the a=msid: lines are replaced as well.
    let with_msid_label = annotate_egress(&prepared.sdp, |mid| label_of(&prepared, mid, true));
    check_egress_sections(&with_msid_label);
    let read_back = prepare_offer(&with_msid_label).expect("annotated output is an sdp");
    assert_eq!(read_back.sections.len(), prepared.sections.len());

    // The answer path of the worker: complete_candidates(ensure_msid_semantic(..)).
    for sdp in [
        annotated.as_str(),
        with_msid_label.as_str(),
        prepared.sdp.as_str(),
        text.as_ref(),
    ] {
        let _ = complete_candidates(&ensure_msid_semantic(sdp));
    }
    let _ = annotate_egress(&text, |mid| label_of(&prepared, mid, true));
    let _ = receiving_sections(&annotated);
});
