//! The whole path in memory: the client's handshake request accepted by the server side, the
//! server's 101 accepted by the client side, pipelined bytes on both sides handed to the
//! engines, then messages both ways and a clean close (RFC 6455 sections 4 and 7).

mod sim;

use sim::*;
use wsframe::handshake::{
    Accept, ClientHandshake, ClientOptions, ClientStatus, ServerHandshake, ServerStatus,
};
use wsframe::{Config, Connection, EndReason, Event, Instant};

#[test]
fn handshake_then_messages_then_close() {
    let mut random = |b: &mut [u8]| b.fill(0x42);
    let (mut client_hs, request) = ClientHandshake::new(
        "ws://127.0.0.1:9001/chat?room=1",
        ClientOptions::new().protocol("chat.v1"),
        &mut random,
    )
    .unwrap();

    // The client's first frame is pipelined right behind its request, in the same write.
    let mut first_write = request.clone();
    let mut client = Connection::client(Config::default(), counter_random(), Instant::ZERO);
    client.send_text("early bird").unwrap();
    first_write.extend(drain_transmit(&mut client, usize::MAX));

    let mut server_hs = ServerHandshake::default();
    let mut status = ServerStatus::Partial;
    for byte in first_write.chunks(1) {
        status = server_hs.receive(byte).unwrap();
        if matches!(status, ServerStatus::Complete(_)) {
            break;
        }
    }
    // Feeding stopped at the end of the request: the rest of the write is still unread here,
    // so hand what the parser kept plus the unread tail to the engine.
    let ServerStatus::Complete(request) = status else {
        panic!("request incomplete")
    };
    assert_eq!(request.path(), "/chat");
    assert_eq!(request.query(), Some("room=1"));
    let response = request.accept(&Accept::new().protocol("chat.v1")).unwrap();
    let consumed = request_len(&first_write);
    let mut pipelined = request.leftover().to_vec();
    pipelined.extend_from_slice(&first_write[consumed..]);

    let mut server = Connection::server(Config::default(), Instant::ZERO);
    server.receive(Instant::ZERO, &pipelined).unwrap();
    assert_eq!(
        drain_events(&mut server),
        vec![Event::Text("early bird".into())]
    );

    // The server's first frame rides behind its 101 response.
    server.send_binary(vec![1u8, 2, 3]).unwrap();
    let mut reply = response;
    reply.extend(drain_transmit(&mut server, usize::MAX));
    let ClientStatus::Complete(resp) = client_hs.receive(&reply).unwrap() else {
        panic!("response incomplete")
    };
    assert_eq!(resp.protocol(), Some("chat.v1"));
    client.receive(Instant::ZERO, resp.leftover()).unwrap();
    assert_eq!(
        drain_events(&mut client),
        vec![Event::Binary(vec![1u8, 2, 3].into())]
    );

    // Close, initiated by the client; both sides end cleanly.
    client.close(1000, "bye").unwrap();
    server
        .receive(Instant::ZERO, &drain_transmit(&mut client, usize::MAX))
        .unwrap();
    // Taking the peer's Close event queues the echo; the end comes once the echo is written.
    let mut server_events = drain_events(&mut server);
    assert!(ended(&server_events).is_none());
    client
        .receive(Instant::ZERO, &drain_transmit(&mut server, usize::MAX))
        .unwrap();
    server_events.extend(drain_events(&mut server));
    let client_events = drain_events(&mut client);
    assert!(
        matches!(ended(&server_events).unwrap().reason, EndReason::ClosedByPeer(Some(ref c)) if c.code == 1000)
    );
    assert!(matches!(
        ended(&client_events).unwrap().reason,
        EndReason::ClosedLocally { .. }
    ));
}

/// Length of the HTTP head at the start of `bytes`.
fn request_len(bytes: &[u8]) -> usize {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
}
