//! `Track`: one published audio or video track. Holds control-plane
//! metadata only (kind, purpose, mute, owner); packets never come here.

use actix::{Actor, Context, Handler, Message};

use crate::snapshot::TrackInfo;

/// The track actor. Its lobby creates it on publish and stops it on unpublish.
#[derive(Debug)]
pub struct Track {
    info: TrackInfo,
}

impl Track {
    /// A track with this metadata.
    pub fn new(info: TrackInfo) -> Self {
        Self { info }
    }
}

impl Actor for Track {
    type Context = Context<Self>;
}

/// Sets the advisory mute state.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetMute {
    /// New state.
    pub mute: bool,
}

impl Handler<SetMute> for Track {
    type Result = ();
    fn handle(&mut self, msg: SetMute, _ctx: &mut Context<Self>) {
        self.info.mute = msg.mute;
    }
}

/// Returns the current metadata.
#[derive(Debug, Message)]
#[rtype(result = "TrackInfo")]
pub struct DescribeTrack;

impl Handler<DescribeTrack> for Track {
    type Result = actix::MessageResult<DescribeTrack>;
    fn handle(&mut self, _msg: DescribeTrack, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.info.clone())
    }
}

/// Ends the track (its publisher left or removed it).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EndTrack;

impl Handler<EndTrack> for Track {
    type Result = ();
    fn handle(&mut self, _msg: EndTrack, ctx: &mut Context<Self>) {
        use actix::ActorContext as _;
        ctx.stop();
    }
}
