//! HOT PATH: forwarding a publisher's RTP to the subscribers of its tracks
//! on this worker, subscriber by subscriber: rewrite (forward.rs), write
//! into the subscriber's `Rtc`, then one timeout + drain per subscriber for
//! the whole batch. No allocation beyond str0m's own; no logging; no actor
//! messages.

use std::time::Instant;

use str0m::media::Mid;
use str0m::rtp::RtpWrite;
use vestibule_actors::snapshot::MediaKind;

use super::forward::{PtMap, forwardable_extensions, is_keyframe};
use super::peer::Role;
use super::slab::PeerKey;
use super::worker::Worker;

impl Worker {
    /// Forwards the packets a publisher's drive produced.
    pub(super) fn fan_out(&mut self, publisher: PeerKey, now: Instant) {
        let packets = std::mem::take(&mut self.forward);
        let mut touched = std::mem::take(&mut self.touched);
        let mut tap_keyframes: Vec<Mid> = Vec::new();
        for (mid, packet) in &packets {
            // The live tap (a virtual subscriber) costs nothing when idle.
            if !self.tap_routes.is_empty()
                && self.tap_packet(publisher, *mid, packet, now)
                && !tap_keyframes.contains(mid)
            {
                tap_keyframes.push(*mid);
            }
            let Some(subscribers) = self.routes.get(&(publisher, *mid)) else {
                continue;
            };
            for &(subscriber, out_index) in subscribers {
                let Some(peer) = self.peers.get_mut(subscriber) else {
                    continue;
                };
                // Before DTLS completes str0m drops what we write; keep the
                // keyframe gate closed until then.
                if !peer.is_connected() {
                    continue;
                }
                let Role::Egress(egress) = &mut peer.role else {
                    continue;
                };
                let Some(out) = egress.outs.get_mut(out_index) else {
                    continue;
                };
                let video = out.track.kind == MediaKind::Video;
                let (Some((pt, codec)), Some(ssrc)) =
                    (out.pt_map.get(packet.header.payload_type), out.tx_ssrc)
                else {
                    continue;
                };
                if out.waiting_keyframe {
                    if !is_keyframe(codec, &packet.payload) {
                        continue;
                    }
                    out.waiting_keyframe = false;
                    if let Some(opened) = out.opened_at {
                        let waited = now.saturating_duration_since(opened);
                        self.metrics
                            .family
                            .first_frame_seconds
                            .observe(waited.as_secs_f64());
                    }
                }
                let seq = out.seq.map(packet.seq_no);
                let clock = if video { 90_000 } else { 48_000 };
                let ts = out.ts.map(packet.header.timestamp, packet.timestamp, clock);
                let write = RtpWrite::new(pt, seq, ts, packet.timestamp, packet.payload.clone())
                    .marker(packet.header.marker)
                    .nackable(video)
                    .ext_vals(forwardable_extensions(&packet.header.ext_vals));
                if let Some(tx) = peer.rtc.direct_api().stream_tx(&ssrc) {
                    tx.write_rtp(write);
                    self.metrics.rtp_forwarded(video, packet.payload.len());
                    touched.push(subscriber);
                }
            }
        }
        // Keep the buffer's allocation for the next drive.
        let mut packets = packets;
        packets.clear();
        self.forward = packets;
        // One timeout + drain per subscriber for the whole batch.
        touched.sort_unstable();
        touched.dedup();
        for &subscriber in &touched {
            self.drive(subscriber, now, |peer, d| {
                if peer.rtc.handle_input(str0m::Input::Timeout(d.now)).is_ok() {
                    peer.drain(d);
                }
            });
            self.after_drive(subscriber, now);
        }
        touched.clear();
        self.touched = touched;
        for mid in tap_keyframes {
            self.request_keyframe(publisher, mid, now);
        }
    }

    /// A subscriber's PLI/FIR becomes a (throttled) request to the publisher.
    pub(super) fn forward_keyframe_requests(&mut self, subscriber: PeerKey, now: Instant) {
        let mids = std::mem::take(&mut self.keyframes_wanted);
        for mid in &mids {
            let Some(peer) = self.peers.get_mut(subscriber) else {
                break;
            };
            let Role::Egress(egress) = &peer.role else {
                break;
            };
            let Some(out) = egress.out_by_mid(*mid).and_then(|i| egress.outs.get(i)) else {
                continue;
            };
            let (source, source_mid) = (out.track.publisher, out.source_mid);
            if let Some(&publisher) = self.ingress_of.get(&source) {
                self.request_keyframe(publisher, source_mid, now);
            }
        }
        let mut mids = mids;
        mids.clear();
        self.keyframes_wanted = mids;
    }

    /// Starts forwarding to an opened out: payload-type map against the
    /// publisher's codecs, the route, and a keyframe request for video.
    pub(super) fn open_route(&mut self, subscriber: PeerKey, out_index: usize, now: Instant) {
        let Some(peer) = self.peers.get_mut(subscriber) else {
            return;
        };
        let Role::Egress(egress) = &peer.role else {
            return;
        };
        let Some(out) = egress.outs.get(out_index) else {
            return;
        };
        let (source, source_mid, video) = (
            out.track.publisher,
            out.source_mid,
            out.track.kind == MediaKind::Video,
        );
        let Some(&publisher) = self.ingress_of.get(&source) else {
            return;
        };
        let Some(params) = self
            .peers
            .get_mut(publisher)
            .map(|p| p.rtc.codec_config().params().to_vec())
        else {
            return;
        };
        let Some(peer) = self.peers.get_mut(subscriber) else {
            return;
        };
        let map = PtMap::build(&params, peer.rtc.codec_config());
        let Role::Egress(egress) = &mut peer.role else {
            return;
        };
        if let Some(out) = egress.outs.get_mut(out_index) {
            out.pt_map = map;
        }
        self.routes
            .entry((publisher, source_mid))
            .or_default()
            .push((subscriber, out_index));
        // A subscriber that is not connected yet asks when it connects
        // (peer.rs): a keyframe sent before DTLS completes is lost, and an
        // early request would only push the useful one into the throttle.
        let connected = self
            .peers
            .get_mut(subscriber)
            .is_some_and(|p| p.is_connected());
        if video && connected {
            self.request_keyframe(publisher, source_mid, now);
        }
    }
}
