// coachwhip::http1 chunked transfer-coding decoder (RFC 9112 §7.1).
//
// Contract
// - Pure and resumable: an explicit state machine that takes input in pieces of any size
//   (down to one byte) and remembers where it was. No I/O, no allocation.
// - Zero-copy: `result.data` points into the `input` passed to that call.
// - Strict: chunk-size is 1*HEXDIG without sign, prefix or spaces, at most 16 significant hex
//   digits (a value that does not fit in 63 bits is an error); each chunk's data must be followed
//   by exactly CRLF; line endings are exactly CRLF (bare CR or bare LF anywhere is an error);
//   chunk extensions are parsed per §7.1.1 (";" name ["=" token/quoted-string]) and discarded;
//   trailer fields are parsed with the same rules as header fields, checked, and discarded.
//   Framing and routing fields in the trailer section (Content-Length, Transfer-Encoding, Host,
//   Trailer, Connection, ...) are an error (RFC 9110 §6.5.1).
//
// Usage
//     for (;;) {
//         auto r = dec.decode(input);     // input: the bytes not yet consumed
//         input.remove_prefix(r.consumed);
//         if (r.status == status::data) deliver(r.data);   // more may follow: call again
//         else break;                                    // need_more, done or error
//     }
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.hpp"

namespace coachwhip::http1 {

class chunked_decoder {
  public:
    struct limits {
        size_t max_line = 4096;       // one chunk-size line including extensions -> 400
        size_t max_trailers = 16384;  // the whole trailer section -> 431
    };

    enum class status : uint8_t {
        data,       // `data` holds the next run of body bytes (non-empty); call again
        need_more,  // all of `input` that could be used was consumed; feed more bytes
        done,       // the last-chunk and trailer section are complete; `consumed` ends there
        error,      // `error` says why; the stream cannot be resynchronised: close it
    };

    struct result {
        // Qualified: an unqualified `status status` is ill-formed ("changes meaning", g++ 12).
        chunked_decoder::status status = chunked_decoder::status::need_more;
        size_t consumed = 0;    // bytes of `input` used by this call
        std::string_view data;  // when status == data
        core::error error;      // when status == error
    };

    chunked_decoder() = default;
    explicit chunked_decoder(limits lim) : lim_(lim) {}

    result decode(std::string_view input) noexcept;

    bool finished() const noexcept { return state_ == state::done; }

  private:
    // Transition diagram (each arrow consumes one byte unless noted; RFC 9112 §7.1):
    //   size --HEXDIG--> size --SP/HTAB--> ext_ws --';'--> ext_name_start
    //   size --';'--> ext_name_start --BWS--> ext_name_start --tchar--> ext_name
    //   ext_name --SP/HTAB--> ext_name_ws --'='--> ext_value_start  (or ';' -> ext_name_start)
    //   ext_name --'='--> ext_value_start --tchar--> ext_value_token, --'"'--> ext_quoted
    //   ext_quoted --'\\'--> ext_quoted_pair --byte--> ext_quoted --'"'--> ext_after_value
    //   ext_value_token / ext_after_value --SP/HTAB--> ext_ws, --';'--> ext_name_start
    //   size / ext_name / ext_value_token / ext_after_value --CR--> size_lf
    //   size_lf --LF--> (size == 0 ? trailer_start : data)
    //   data --n bytes (returned as status::data)--> data_cr --CR--> data_lf --LF--> size
    //   trailer_start --CR--> end_lf --LF--> done
    //   trailer_start --tchar--> trailer_name --':'--> trailer_value --CR--> trailer_lf
    //   trailer_lf --LF--> trailer_start
    //   any --invalid byte or limit--> failed (sticky: every later call returns the same error)
    enum class state : uint8_t {
        size,
        ext_ws,
        ext_name_start,
        ext_name,
        ext_name_ws,
        ext_value_start,
        ext_value_token,
        ext_quoted,
        ext_quoted_pair,
        ext_after_value,
        size_lf,
        data,
        data_cr,
        data_lf,
        trailer_start,
        trailer_name,
        trailer_value,
        trailer_lf,
        end_lf,
        done,
        failed
    };

    bool step(unsigned char b) noexcept;
    bool step_size(unsigned char b) noexcept;
    bool step_ext(unsigned char b) noexcept;
    bool step_ext_value(unsigned char b) noexcept;
    bool step_after_value(unsigned char b) noexcept;
    bool step_line_end(unsigned char b) noexcept;
    bool step_trailer(unsigned char b) noexcept;
    bool step_trailer_name(unsigned char b) noexcept;
    bool finish_trailer_name() noexcept;
    bool fail(uint16_t status, std::string_view reason) noexcept;

    limits lim_{};
    state state_ = state::size;
    uint64_t size_ = 0;       // the chunk-size being parsed, then the data bytes still to come
    size_t digits_ = 0;       // hex digits seen in the current chunk-size (leading zeros too)
    size_t line_len_ = 0;     // bytes of the current chunk-size line before its CR
    size_t trailer_len_ = 0;  // bytes of the trailer section so far, CRLFs included
    core::error error_{};     // set once, when state_ becomes failed
    // The current trailer name, lowercased, as far as it fits: enough to recognise every
    // forbidden name (the longest is 17 bytes) without buffering the line.
    char trailer_name_[24] = {};
    uint8_t trailer_name_len_ = 0;
    bool trailer_name_long_ = false;  // longer than trailer_name_: cannot be a forbidden name
};

}  // namespace coachwhip::http1
