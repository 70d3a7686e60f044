import Hummingbird
import NIOCore

extension ResponseBody {
    /// `start` at once, then `filler` every 20 ms until the client hangs up (a write fails) or
    /// the server stops: an answer that never ends but is never silent either, so no read timeout
    /// ends it — only a deadline on the whole answer.
    static func trickling(_ start: String, filler: String) -> ResponseBody {
        ResponseBody { writer in
            try await writer.write(ByteBuffer(string: start))
            while !Task.isCancelled {
                try await writer.write(ByteBuffer(string: filler))
                try await Task.sleep(for: .milliseconds(20))
            }
            try await writer.finish(nil)
        }
    }
}
