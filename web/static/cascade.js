// Cascade browser client: the signaling protocol of PROTOCOL.md on standard browser APIs only
// (WebSocket, RTCPeerConnection, EventTarget). No dependencies and no build step: the modules
// under cascade/ load as they are. Types for TypeScript: cascade.d.ts, next to this file.
//
//   import { CascadeClient } from "/cascade.js";
//   const client = new CascadeClient();
//   client.addEventListener("track", (e) => attach(e.detail.track, e.detail.participantId));
//   await client.connect("/ws", token);
//   await client.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
//
// Simulcast and layers (PROTOCOL.md, "Simulcast, bandwidth and speakers"):
//
//   await client.publish(stream, { simulcast: 3 });  // or true (3), 2, or your own sendEncodings
//   client.setPreferredLayer(producerId, { maxWidth: 320, maxHeight: 180 }); // a thumbnail
//   client.setPreferredLayer(producerId, { layer: 0 });                       // the lowest layer
//   client.setPreferredLayer(producerId);                                     // no limit: the top
//   const stop = client.fitLayer(producerId, videoElement); // follows the element's size
//
// The node picks each viewer's layer (its preference and its bandwidth); the publisher's client
// pauses and resumes its layers' encodings as the node asks (`layersWanted`, dynacast).
//
// When the node goes (its WebSocket closes without a `closed` notification, or it answers no
// ping for 3 s), the client resumes the session on another node (PROTOCOL.md, "Resume"): the
// join answer's nodes first, then the URL given to connect (placement), at once and then with
// jittered backoff; state "reconnecting", then "connected" and a `resumed` event. A <video>
// playing a stream of a `track` event plays on by itself.
//
// A page that does not use modules can read window.Cascade once a module loaded this file:
// `new Cascade()` and `new Cascade.CascadeClient()` are the same.
//
// Events (CustomEvent, payload in event.detail):
//   state               {state, previous}: "connecting" | "connected" | "reconnecting" |
//                       "migrating" (make-before-break off a draining node) | "closed"
//   joined              join response data (roomMetadata included), plus {reconnected, resumed}
//   closed              {reason, code}: the session ended without close(): "replaced" (4001),
//                       "removed" (4003), "room_deleted" (4004), another `closed` reason, an
//                       error code when reconnection gave up, or "disconnected" ({reconnect:
//                       false}). No reconnection follows; the state becomes "closed" next.
//   participantJoined   Participant {id, identity, joinedAt, metadata?}
//   participantLeft     {id}
//   participantUpdated  Participant: its metadata changed (this client's own too)
//   roomUpdated         {metadata}: the room's metadata changed (also client.roomMetadata)
//   producerAdded       Producer
//   producerRemoved     {id, participant}
//   producerMuted       {id, muted, byServer}: byServer, a moderator muted it; when it is one
//                       of this client's producers, its track is disabled and mute(id, false)
//                       fails with "forbidden" until an unmuteRequested
//   unmuteRequested     {producer}: a moderator asks this client to unmute one of its
//                       producers; to accept, call mute(producer, false)
//   message             {from, identity, data}: from "" is the server (the room API)
//   resumed             {participant, url, migrated}: the node went (or drained) and the session
//                       goes on at url: same participant id, same producer ids, same streams
//   migrate             {node, url, reason, deadline}: the node drains; the client moves by itself
//   producerMoved       {id, participant}: a publisher resumed elsewhere; its track goes on
//   track               {track, stream, streams, participantId, producerId, kind}: stream (the
//                       producer's) and streams[0] (the participant's) are stable MediaStreams
//   trackReplaced       {track, previous, stream, streams, ...}: after a resume, the new track
//                       took the old one's place inside those streams (nothing to do)
//   trackEnded          {track, participantId, producerId, kind}
//   layerChanged        {producer, layer, rid}: the simulcast layer this client receives of a
//                       producer changed (also client.receivedLayers)
//   layersWanted        {producer, layers: {rid: bool}}: the server wants only some layers of one
//                       of this client's simulcast producers (dynacast); the client has already
//                       paused the others' encodings (RTCRtpSender.setParameters, active false)
//   activeSpeakers      {speakers: [{participant, producer, level}]}: the room's loudest
//                       participants, loudest first, level 0..1; [] when nobody speaks (also
//                       client.activeSpeakers)
//   data                {data, label}: a message on the receive transport's data channel
//   transportState      {transport: "send"|"recv", state}: RTCPeerConnection.connectionState
//   notification        {method, data}: a notification this library does not know
//   error               {error, context}: an asynchronous failure (nothing threw to the caller);
//                       context "connection" with error.code "slow_client" (close 4002),
//                       "join_deadline" (4008) or "flood" (4029): the client reconnects

import { CascadeClient } from "./cascade/client.js";
import { CascadeError } from "./cascade/util.js";

CascadeClient.CascadeClient = CascadeClient;
CascadeClient.CascadeError = CascadeError;

if (typeof window !== "undefined") window.Cascade = CascadeClient;

export { CascadeClient, CascadeError };
export default CascadeClient;
