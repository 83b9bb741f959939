import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardStore

/// Sends one channel's queued replies through its adapter: in order per conversation, retrying
/// retryable failures with backoff, reporting permanent ones at once, each as a
/// `message.status` event carrying the helpdesk's metadata.
struct SendWorker: Sendable {
    let adapter: any ChannelAdapter
    let context: RuntimeAdapterContext
    let store: Store
    let outboundSignal: ChangeSignal
    let eventSignal: ChangeSignal
    let schedule: RetrySchedule
    let pipeline: IngestPipeline
    let hub: ChannelHub

    /// On graceful shutdown the sends under way finish and their outcomes are recorded before
    /// `run` returns, so an answered send is never sent again after the restart; nothing new is
    /// claimed.
    func run() async throws {
        let channelID = adapter.channel.id
        try await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let generation = outboundSignal.generation
                let jobs = try await store.claimSends(channelID: channelID, limit: 16, leaseMS: 120_000)
                if jobs.isEmpty {
                    let due = try await store.nextSendDue(channelID: channelID)
                    let wait = due.map { max(10, min($0 - Store.nowMS(), 5000)) } ?? 5000
                    await outboundSignal.wait(after: generation, timeout: .milliseconds(wait))
                    continue
                }
                await withTaskGroup(of: Void.self) { group in
                    for job in jobs { group.addTask { await self.send(job) } }
                }
            }
        } onGracefulShutdown: {
            outboundSignal.notify()
        }
    }

    func send(_ job: SendJob) async {
        let channel = adapter.channel
        let out = OutboundMessage(message: job.message, rendered: job.rendered, conversation: job.conversation,
                                  recipient: job.recipient, replyToExternalID: job.replyToExternalID, attempt: job.attempts + 1)
        let ctx = pipeline.eventContext
        do {
            let result = try await adapter.send(out, context: context)
            await recordSent(job, result: result, ctx: ctx)
            Counter(label: "switchboard_sends_total", dimensions: [("channel", channel.id), ("result", "sent")]).increment()
        } catch {
            let sendError = (error as? SendError)
                ?? SendError(code: "channel_error", message: "\(error)", retryable: true)
            Counter(label: "switchboard_send_errors_total",
                    dimensions: [("channel", channel.id), ("code", sendError.code), ("retryable", "\(sendError.retryable)")]).increment()
            if let state = sendError.channelState {
                await hub.setStatus(channel, state: state, detail: sendError.message)
            }
            let attempts = job.attempts + 1
            do {
                if sendError.retryable, let delay = schedule.delay(afterAttempts: attempts, retryAfter: sendError.retryAfter,
                                                                  elapsed: Double(Timestamp.now().milliseconds - job.message.receivedAt.milliseconds) / 1000) {
                    context.logger.warning("send failed; will retry", metadata: [
                        "channel": "\(channel.id)", "message": "\(job.message.id)", "attempt": "\(attempts)", "error": "\(sendError)"])
                    try await store.retrySend(job, nextAttemptAt: Store.nowMS() + Int64(delay * 1000), error: sendError)
                } else {
                    context.logger.error("send failed", metadata: [
                        "channel": "\(channel.id)", "message": "\(job.message.id)", "attempt": "\(attempts)", "error": "\(sendError)"])
                    try await store.failSend(job, error: sendError, ctx: ctx)
                }
            } catch {
                context.logger.error("cannot record a send outcome", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
            }
        }
        eventSignal.notify()
    }

    /// The platform has the message: record that, retrying the write — never the send — while
    /// the store refuses it (a full disk, a locked database). A failed write treated as a failed
    /// send would send the message again, and again each time its lease ran out. Only a stop
    /// ends the attempts early; the message is then sent again after the restart.
    func recordSent(_ job: SendJob, result: SendResult, ctx: EventContext) async {
        var pause = 0.2
        while true {
            do {
                try await store.completeSend(job, result: result, ctx: ctx)
                return
            } catch {
                context.logger.error("sent, but cannot record it; trying the record again (not the send)", metadata: [
                    "channel": "\(adapter.channel.id)", "message": "\(job.message.id)", "error": "\(error)"])
            }
            do { try await Task.sleep(for: .milliseconds(Int64(pause * 1000))) } catch { return }
            pause = min(pause * 2, 10)
        }
    }
}
