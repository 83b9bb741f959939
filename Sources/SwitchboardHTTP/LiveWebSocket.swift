import NIOCore
import NIOWebSocket
import SwitchboardCore

/// Limits and timings of the public listener's WebSockets (`ChannelAdapter.serveLive`).
enum LiveWebSocketLimits {
    /// A message (its fragments joined) larger than this closes the socket with 1009. Adapters
    /// keep smaller limits of their own and answer them in their protocol (the webchat adapter's
    /// `too_large` past 32 KiB), so this only stops abuse.
    static let maxMessageBytes = 64 * 1024
    /// A ping this often; a peer that hasn't answered the previous one by the next is gone.
    static let pingInterval = TimeAmount.seconds(30)
    /// How long our close frame waits for the peer's before the connection is closed anyway.
    static let closeTimeout = TimeAmount.seconds(5)
    /// Messages received but not yet taken by the adapter. A peer that gets this far ahead is
    /// flooding: its socket is closed (1008) rather than messages silently dropped.
    static let maxQueuedMessages = 256
    /// Bytes written to a peer that doesn't read them. Past this the connection is closed (the
    /// widget reconnects and resumes) instead of buffering without bound.
    static let maxUnsentBytes = 8 << 20
}

/// One upgraded WebSocket, run by its event loop alone: it answers pings and the closing
/// handshake, joins fragmented text messages and hands each to the adapter's `incoming` stream,
/// writes what the adapter sends, and pings the peer every `pingInterval`, closing a peer that
/// stopped answering. Nothing here needs a Swift task: an idle socket costs its channel, this
/// handler and the adapter's `serveLive` task.
final class LiveWebSocketHandler: ChannelInboundHandler, NIOScheduledCallbackHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private enum State {
        case open
        /// Our close frame is sent; waiting for the peer's (or `closeTimeout`).
        case closing
        case closed
    }

    private var state = State.open
    private var context: ChannelHandlerContext?
    private let incoming: AsyncStream<String>.Continuation
    /// The text message being joined from fragments.
    private var fragments: ByteBuffer?
    /// Inside a fragmented binary message, which is ignored like whole binary ones.
    private var skippingBinary = false
    private var awaitingPong = false
    /// The next keepalive ping while open; the close deadline while closing.
    private var timer: NIOScheduledCallback?

    init(incoming: AsyncStream<String>.Continuation) {
        self.incoming = incoming
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        schedule(in: LiveWebSocketLimits.pingInterval)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard state != .closed else { return }
        // No extension was negotiated, so no reserved bit may be set (RFC 6455 5.2).
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else { return close(.protocolError) }
        switch frame.opcode {
        case .text:
            guard fragments == nil, !skippingBinary else { return close(.protocolError) }
            if frame.fin { deliver(frame.unmaskedData) } else { fragments = frame.unmaskedData }
        case .binary:
            guard fragments == nil, !skippingBinary else { return close(.protocolError) }
            skippingBinary = !frame.fin
        case .continuation:
            if skippingBinary {
                skippingBinary = !frame.fin
                return
            }
            guard var message = fragments else { return close(.protocolError) }
            fragments = nil
            var more = frame.unmaskedData
            guard message.readableBytes + more.readableBytes <= LiveWebSocketLimits.maxMessageBytes else {
                return close(.messageTooLarge)
            }
            message.writeBuffer(&more)
            if frame.fin { deliver(message) } else { fragments = message }
        case .ping:
            guard frame.fin else { return close(.protocolError) }
            if state == .open { write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)) }
        case .pong:
            awaitingPong = false
        case .connectionClose:
            guard state == .open else {
                // The answer to our close frame: the handshake is done.
                context.close(promise: nil)
                return
            }
            // The peer closes: answer with its code (RFC 6455 5.5.1).
            var data = frame.unmaskedData
            close(data.readWebSocketErrorCode() ?? .normalClosure, answering: true)
        default:
            close(.protocolError)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            // The listener stops (graceful shutdown): say goodbye, so the server doesn't wait for
            // idle widgets; they reconnect to the next daemon.
            close(.goingAway)
        case let event as ChannelEvent where event == .inputClosed:
            // The peer shut its side without a close frame (half-closure is enabled by the server).
            context.close(promise: nil)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Keepalive (open) or close deadline (closing).
    func handleScheduledCallback(eventLoop: some EventLoop) {
        timer = nil
        switch state {
        case .open:
            if awaitingPong {
                // No pong since the last ping: the peer is gone (a closed laptop, a dead NAT entry).
                context?.close(promise: nil)
                return
            }
            awaitingPong = true
            write(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer()))
            schedule(in: LiveWebSocketLimits.pingInterval)
        case .closing:
            context?.close(promise: nil)
        case .closed:
            break
        }
    }

    // MARK: the adapter's side (`LiveWebSocket`), on the event loop

    /// Writes one text frame, unless the socket is closing.
    func send(_ text: String) {
        guard state == .open, let context else { return }
        let unsent = (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
        guard unsent < LiveWebSocketLimits.maxUnsentBytes else {
            // The peer stopped reading long ago; a close frame would wait behind the rest.
            context.close(promise: nil)
            return
        }
        write(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text)))
    }

    /// Starts the closing handshake: a close frame after everything already written, then the
    /// connection closes when the peer answers (or after `closeTimeout`); when `answering` the
    /// peer's close frame, as soon as ours is written. The adapter's `incoming` finishes now, so
    /// its `serveLive` returns.
    func close(_ code: WebSocketErrorCode, answering: Bool = false) {
        guard state == .open, let context else { return }
        state = .closing
        fragments = nil
        incoming.finish()
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        if answering {
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            context.writeAndFlush(wrapOutboundOut(frame), promise: written)
        } else {
            write(frame)
        }
        timer?.cancel()
        schedule(in: LiveWebSocketLimits.closeTimeout)
    }

    // MARK: helpers

    private func deliver(_ message: ByteBuffer) {
        guard state == .open else { return }
        if case .dropped = incoming.yield(String(buffer: message)) { close(.policyViolation) }
    }

    private func write(_ frame: WebSocketFrame) {
        context?.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    private func schedule(in delay: TimeAmount) {
        guard let context else { return }
        timer = try? context.eventLoop.assumeIsolated().scheduleCallback(in: delay, handler: self)
    }

    /// The connection is gone: no more timers, and the adapter's `incoming` ends.
    private func finish() {
        state = .closed
        timer?.cancel()
        timer = nil
        fragments = nil
        incoming.finish()
        context = nil
    }
}

/// The adapter's handle on one WebSocket (`LiveSocket`): callable from any task; every call
/// hops to the connection's event loop, so frames go out in the order they were sent.
final class LiveWebSocket: LiveTransport {
    private let handler: NIOLoopBound<LiveWebSocketHandler>
    private let eventLoop: any EventLoop

    init(_ handler: LiveWebSocketHandler, eventLoop: any EventLoop) {
        self.handler = NIOLoopBound(handler, eventLoop: eventLoop)
        self.eventLoop = eventLoop
    }

    func send(_ text: String) {
        eventLoop.execute { [handler] in handler.value.send(text) }
    }

    func close() {
        eventLoop.execute { [handler] in handler.value.close(.normalClosure) }
    }
}
