use super::*;
use crate::proto::http::{parse_head, Head};

const PLAIN: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const WITH_WINDOW: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15";

fn request(extension_headers: &[&str]) -> Request {
    let mut text = String::from(
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for value in extension_headers {
        text.push_str(&format!("Sec-WebSocket-Extensions: {value}\r\n"));
    }
    text.push_str("\r\n");
    match parse_head(text.as_bytes()) {
        Head::Complete { request, .. } => request,
        other => panic!("{other:?}"),
    }
}

/// The answer to one header value: the response text, or None (declined).
fn answer(value: &str) -> Option<&'static str> {
    negotiate(&request(&[value])).map(Agreement::response)
}

#[test]
fn no_header_no_extension() {
    assert_eq!(negotiate(&request(&[])), None);
    assert_eq!(answer(""), None);
}

#[test]
fn a_bare_offer_is_answered_with_both_no_context_takeover() {
    // 7.1.1.1 and 7.1.1.2: the server may ask for client_no_context_takeover
    // unasked, and declares server_no_context_takeover itself.
    assert_eq!(answer("permessage-deflate"), Some(PLAIN));
}

#[test]
fn no_context_takeover_offered_by_the_client_is_met() {
    assert_eq!(
        answer("permessage-deflate; server_no_context_takeover"),
        Some(PLAIN)
    );
    assert_eq!(
        answer("permessage-deflate; client_no_context_takeover"),
        Some(PLAIN)
    );
    assert_eq!(
        answer("permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
        Some(PLAIN)
    );
}

#[test]
fn no_context_takeover_with_a_value_declines_the_offer() {
    assert_eq!(
        answer("permessage-deflate; server_no_context_takeover=1"),
        None
    );
    assert_eq!(
        answer("permessage-deflate; client_no_context_takeover=true"),
        None
    );
    assert_eq!(
        answer("permessage-deflate; client_no_context_takeover=\"x\""),
        None
    );
}

#[test]
fn server_max_window_bits_15_is_met_and_echoed() {
    // 7.1.2.1: accepted with the parameter in the answer, value no larger.
    assert_eq!(
        answer("permessage-deflate; server_max_window_bits=15"),
        Some(WITH_WINDOW)
    );
    assert_eq!(
        answer("permessage-deflate; server_max_window_bits=\"15\""),
        Some(WITH_WINDOW)
    );
}

#[test]
fn a_smaller_server_window_cannot_be_honoured_and_declines() {
    for bits in 8..15 {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        assert_eq!(answer(&offer), None, "{offer}");
    }
}

#[test]
fn server_max_window_bits_needs_a_valid_value() {
    for value in [
        "", "=", "=7", "=16", "=015", "=+15", "=1 5", "=abc", "=\"16\"", "=\"15",
    ] {
        let offer = format!("permessage-deflate; server_max_window_bits{value}");
        assert_eq!(answer(&offer), None, "{offer}");
    }
}

#[test]
fn client_max_window_bits_with_or_without_a_value_is_met_and_not_named() {
    // 7.1.2.2: without a value the client only says it supports the
    // parameter; with one it limits itself. Our inflater takes any window
    // up to 15, so the answer names none.
    assert_eq!(
        answer("permessage-deflate; client_max_window_bits"),
        Some(PLAIN)
    );
    for bits in 8..=15 {
        let offer = format!("permessage-deflate; client_max_window_bits={bits}");
        assert_eq!(answer(&offer), Some(PLAIN), "{offer}");
    }
    assert_eq!(
        answer("permessage-deflate; client_max_window_bits=\"10\""),
        Some(PLAIN)
    );
}

#[test]
fn client_max_window_bits_with_an_invalid_value_declines() {
    for value in ["7", "16", "08", "0", "-9", "x", "\"\""] {
        let offer = format!("permessage-deflate; client_max_window_bits={value}");
        assert_eq!(answer(&offer), None, "{offer}");
    }
}

#[test]
fn an_unknown_parameter_declines_the_offer() {
    assert_eq!(answer("permessage-deflate; mux"), None);
    assert_eq!(answer("permessage-deflate; x=1"), None);
    assert_eq!(
        answer("permessage-deflate; Server_No_Context_Takeover"),
        None
    );
}

#[test]
fn a_repeated_parameter_declines_the_offer() {
    for offer in [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=15; server_max_window_bits=15",
    ] {
        assert_eq!(answer(offer), None, "{offer}");
    }
}

#[test]
fn the_first_offer_that_can_be_met_wins() {
    // Autobahn 13.7: a smaller server window first, then fallbacks.
    let offers = "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                  server_no_context_takeover; server_max_window_bits=8, \
                  permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                  server_no_context_takeover, \
                  permessage-deflate; client_no_context_takeover; client_max_window_bits";
    assert_eq!(answer(offers), Some(PLAIN));
    let offers = "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=15";
    assert_eq!(answer(offers), Some(WITH_WINDOW));
    let offers = "permessage-deflate; server_max_window_bits=15, permessage-deflate";
    assert_eq!(answer(offers), Some(WITH_WINDOW));
}

#[test]
fn offers_in_repeated_headers_are_read_in_order() {
    let agreed = negotiate(&request(&[
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=15",
    ]));
    assert_eq!(agreed.map(Agreement::response), Some(WITH_WINDOW));
}

#[test]
fn other_extensions_are_passed_over() {
    assert_eq!(answer("x-webkit-deflate-frame"), None);
    assert_eq!(answer("permessage-foo, deflate-frame"), None);
    assert_eq!(
        answer("foo; a=\"b, c\"; d, permessage-deflate"),
        Some(PLAIN)
    );
    assert_eq!(answer("PERMESSAGE-DEFLATE"), None);
}

#[test]
fn broken_syntax_declines_only_its_own_element() {
    for broken in [
        "permessage-deflate; ",
        "permessage-deflate;;",
        "permessage-deflate; =15",
        "permessage-deflate; client max window bits",
        "permessage-deflate x",
    ] {
        assert_eq!(answer(broken), None, "{broken}");
        assert_eq!(
            answer(&format!("{broken}, permessage-deflate")),
            Some(PLAIN),
            "{broken}"
        );
    }
    // An unfinished quoted string runs to the end of the header.
    assert_eq!(
        answer("permessage-deflate; client_max_window_bits=\"10, permessage-deflate"),
        None
    );
}

#[test]
fn whitespace_around_separators_is_allowed() {
    assert_eq!(
        answer(" permessage-deflate ;client_max_window_bits = 12 ;\tserver_no_context_takeover "),
        Some(PLAIN)
    );
}

/// Offers as real clients send them, and what each gets.
#[test]
fn offers_of_real_browsers_and_libraries() {
    let table: &[(&str, &str, Option<&str>)] = &[
        ("Chrome, Edge, Firefox, Safari (current)", "permessage-deflate; client_max_window_bits", Some(PLAIN)),
        ("Firefox (older), Safari, OkHttp", "permessage-deflate", Some(PLAIN)),
        ("Safari (before 2015)", "x-webkit-deflate-frame", None),
        ("node ws, default", "permessage-deflate; client_max_window_bits", Some(PLAIN)),
        (
            "node ws, serverMaxWindowBits: 10",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
            None,
        ),
        ("python-websockets, default", "permessage-deflate; client_max_window_bits", Some(PLAIN)),
        (
            "python-websockets, server_max_window_bits=12 then a fallback",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits, permessage-deflate",
            Some(PLAIN),
        ),
        (
            "Go gorilla/websocket",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            Some(PLAIN),
        ),
        (
            "Autobahn 12.* and 13.1",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            Some(PLAIN),
        ),
        (
            "Autobahn 13.4",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15",
            Some(WITH_WINDOW),
        ),
        (
            "Autobahn 13.5",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8",
            None,
        ),
        (
            "Java-WebSocket / Jetty",
            "permessage-deflate; client_max_window_bits=15",
            Some(PLAIN),
        ),
    ];
    for (who, offer, want) in table {
        assert_eq!(answer(offer), *want, "{who}: {offer}");
    }
}
