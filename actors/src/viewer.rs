//! `Viewer`: one plain WHEP viewer of a lobby's program (API.md "Plain
//! viewers"). It has no WHIP session; the actor exists to receive its
//! peer's events from the worker and tell the lobby when the peer is gone.

use actix::{Actor, ActorContext as _, Addr, Context, Handler, Message};

use crate::ids::WhepId;
use crate::lobby::Lobby;
use crate::media::MediaEvent;

/// The viewer actor; its lobby starts it and stops it.
#[derive(Debug)]
pub struct Viewer {
    whep: WhepId,
    lobby: Addr<Lobby>,
}

impl Viewer {
    /// A viewer of `lobby` known by its resource id.
    pub fn new(whep: WhepId, lobby: Addr<Lobby>) -> Self {
        Self { whep, lobby }
    }
}

impl Actor for Viewer {
    type Context = Context<Self>;
}

impl Handler<MediaEvent> for Viewer {
    type Result = ();
    fn handle(&mut self, msg: MediaEvent, ctx: &mut Context<Self>) {
        // A viewer has no signal channel and no ingress: only the loss of
        // its peer matters.
        if let MediaEvent::EgressLost { .. } | MediaEvent::Lost { .. } = msg {
            self.lobby.do_send(ViewerLeft { whep: self.whep });
            ctx.stop();
        }
    }
}

/// Ends the viewer actor (its lobby already closed the peer).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EndViewer;

impl Handler<EndViewer> for Viewer {
    type Result = ();
    fn handle(&mut self, _msg: EndViewer, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A viewer's peer went away by itself.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ViewerLeft {
    /// The viewer's resource id.
    pub whep: WhepId,
}
