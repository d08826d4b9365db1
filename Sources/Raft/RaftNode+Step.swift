extension RaftNode {
    /// Feeds a message received from a peer. Messages addressed to another member are ignored, as are
    /// messages from past terms (apart from the answers that let a stale leader or candidate catch up).
    /// A message no correct member sends is refused with `RaftError.invalidMessage` and changes nothing: peers
    /// may be buggy, stale or hostile, and none of them may make this member trap.
    public mutating func step(_ m: Message) throws(RaftError) {
        guard m.to == id else { return }
        guard m.from != 0, m.from != id else { throw .stepLocalMessage }
        if let invalidity = m.invalidity { throw .invalidMessage(invalidity) }
        switch m.kind {
        case .propose, .readIndex, .transferLeader:
            // Term-less requests: valid in whatever term the receiver is in.
            stepByRole(m)
            return
        default:
            break
        }
        if m.term > term {
            if m.kind == .requestVote || m.kind == .requestPreVote {
                // Leader stickiness: while we hear from a leader, a vote request is most likely from a
                // member that was partitioned away and would only disrupt. A transfer is the exception:
                // the leader itself asked for this election.
                let forced = m.context == Message.transferContext
                let inLease = config.checkQuorum && (role == .leader || ticksSinceLeaderContact < config.electionTick)
                if !forced && inLease { return }
            }
            switch m.kind {
            case .requestPreVote:
                break  // A pre-vote never changes our term.
            case .requestPreVoteResponse where !m.reject:
                break  // A granted pre-vote carries the term we are about to campaign in.
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: m.term, lead: m.from)
            default:
                becomeFollower(term: m.term, lead: 0)
            }
        } else if m.term < term {
            if (config.checkQuorum || config.preVote) && (m.kind == .heartbeat || m.kind == .append) {
                // A leader that was partitioned away and missed the new term would otherwise never learn it:
                // with check-quorum and pre-vote we never disrupt it by campaigning, so tell it.
                send(Message(kind: .appendResponse, to: m.from))
            } else if m.kind == .requestPreVote {
                // Let a stale pre-candidate learn our term so it stops asking.
                send(Message(kind: .requestPreVoteResponse, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.kind {
        case .requestVote, .requestPreVote:
            handleVoteRequest(m)
        default:
            stepByRole(m)
        }
    }

    mutating func handleVoteRequest(_ m: Message) {
        let pre = m.kind == .requestPreVote
        // We may vote for a candidate we already voted for (a retransmission), for anyone if we have neither
        // voted nor seen a leader in this term, or, for a pre-vote, for a future term.
        let canVote = vote == m.from || (vote == 0 && lead == 0) || (pre && m.term > term)
        let upToDate =
            config.testingMutation == .skipLogUpToDateCheck
            || log.isUpToDate(lastIndex: m.index, lastTerm: m.logTerm)
        let responseKind: MessageKind = pre ? .requestPreVoteResponse : .requestVoteResponse
        if canVote && upToDate {
            // A granted pre-vote answers in the candidate's future term so the candidate can count it.
            send(Message(kind: responseKind, to: m.from, term: m.term))
            if !pre {
                precondition(vote == 0 || vote == m.from, "double vote in term \(term)")
                electionElapsed = 0
                vote = m.from
            }
        } else {
            send(Message(kind: responseKind, to: m.from, term: term, reject: true))
        }
    }

    mutating func stepByRole(_ m: Message) {
        switch role {
        case .leader: stepLeader(m)
        case .candidate, .preCandidate: stepCandidate(m)
        case .follower: stepFollower(m)
        }
    }

    // MARK: - Follower and candidate

    mutating func stepFollower(_ m: Message) {
        switch m.kind {
        case .propose:
            // A follower forwards proposals it receives only from its own application; one hop at most, so a
            // stale view of the leader can never make a proposal loop.
            break
        case .append:
            heardFromLeader(m.from)
            handleAppend(m)
        case .heartbeat:
            heardFromLeader(m.from)
            handleHeartbeat(m)
        case .snapshot:
            heardFromLeader(m.from)
            handleSnapshot(m)
        case .transferLeader:
            // Like proposals, a transfer request is forwarded once, by the follower whose application asked
            // (`transferLeadership`), never relayed for a peer: a relayed message would leave under the peer's
            // name, and two followers with stale views of the leader would pass it back and forth.
            break
        case .timeoutNow:
            // The leader chose us: campaign at once, skipping pre-vote (the leader is still alive and would
            // make the pre-vote fail) and telling voters to ignore their lease.
            hup(transfer: true)
        case .readIndexResponse:
            // Only the leader of this term confirms a read index; any other sender is wrong or hostile.
            guard m.from == lead else { break }
            readStates.append(ReadState(index: m.index, context: m.context))
        default:
            break
        }
    }

    mutating func stepCandidate(_ m: Message) {
        switch m.kind {
        case .append:
            becomeFollower(term: m.term, lead: m.from)
            heardFromLeader(m.from)
            handleAppend(m)
        case .heartbeat:
            becomeFollower(term: m.term, lead: m.from)
            heardFromLeader(m.from)
            handleHeartbeat(m)
        case .snapshot:
            becomeFollower(term: m.term, lead: m.from)
            heardFromLeader(m.from)
            handleSnapshot(m)
        case .requestPreVoteResponse where role == .preCandidate, .requestVoteResponse where role == .candidate:
            switch recordVote(from: m.from, granted: !m.reject) {
            case .won:
                if role == .preCandidate {
                    startElection(pre: false, transfer: false)
                } else {
                    becomeLeader()
                    needsBroadcast = true
                }
            case .lost:
                // A rejection may carry a higher term, in which case step() already made us a follower.
                becomeFollower(term: term, lead: 0)
            case .pending:
                break
            }
        default:
            break
        }
    }

    /// A message from the leader of our term: restart the election timer and the lease we grant it.
    mutating func heardFromLeader(_ leader: NodeID) {
        electionElapsed = 0
        ticksSinceLeaderContact = 0
        lead = leader
    }

    mutating func handleAppend(_ m: Message) {
        if m.index < log.committed {
            // Everything up to our commit index already matches; tell the leader where we stand.
            send(Message(kind: .appendResponse, to: m.from, index: log.committed))
            return
        }
        let skip = config.testingMutation == .skipAppendConsistencyCheck
        if let result = log.maybeAppend(
            prevIndex: m.index, prevTerm: m.logTerm, leaderCommit: m.commit, entries: m.entries, skipCheck: skip)
        {
            logChanged(truncatedFrom: result.truncatedFrom, appended: m.entries[result.appendedFrom...])
            send(Message(kind: .appendResponse, to: m.from, index: result.lastNew))
        } else {
            // Hint the highest index at which our log may match: the last entry whose term is not above
            // the leader's term at m.index. The leader skips straight there.
            let hint = log.findConflictByTerm(index: min(m.index, log.lastIndex), term: m.logTerm)
            send(
                Message(
                    kind: .appendResponse, to: m.from, logTerm: hint.term, index: m.index, reject: true,
                    rejectHint: hint.index))
        }
    }

    mutating func handleHeartbeat(_ m: Message) {
        // The leader never sends a commit index beyond what we acknowledged. One beyond our log means the leader
        // is wrong about it (a lost log, a bug, a lie): the entries we hold may not be the ones it committed, so
        // nothing is committed; the next append finds where the logs match.
        if m.commit <= log.lastIndex { log.commit(to: m.commit) }
        send(Message(kind: .heartbeatResponse, to: m.from, context: m.context))
    }

    mutating func handleSnapshot(_ m: Message) {
        guard let snap = m.snapshot else { return }
        let meta = snap.metadata
        if meta.index <= log.committed {
            send(Message(kind: .appendResponse, to: m.from, index: log.committed))
            return
        }
        if log.matchTerm(meta.index, meta.term) {
            // We already hold the entries the snapshot covers: just learn that they are committed. The answer is the
            // commit index, not our last index: entries past the snapshot may be a stale suffix of an older term, and
            // a leader counting them as matching its own could commit an entry on replicas that do not hold it.
            log.commit(to: meta.index)
            send(Message(kind: .appendResponse, to: m.from, index: log.committed))
            return
        }
        log.restore(snap)
        snapshot = snap
        baseConf = meta.confState
        confChanges.removeAll()
        confEntriesToApply.removeAll()
        installConf()
        send(Message(kind: .appendResponse, to: m.from, index: log.lastIndex))
    }

    // MARK: - Leader

    mutating func stepLeader(_ m: Message) {
        switch m.kind {
        case .propose:
            for var e in m.entries {
                if e.kind == .confChange {
                    let change = try? ConfChange(serialized: e.data)
                    if let change, (try? validateConfChange(change)) != nil {
                        // valid
                    } else {
                        // Keep the batch's other entries; neutralize the refused change (etcd does the same).
                        e = Entry(term: 0, index: 0, kind: .normal, data: [])
                    }
                }
                do throws(RaftError) {
                    try propose(e)
                } catch {
                    return
                }
            }
        case .readIndex:
            handleReadIndex(from: m.from, context: m.context)
        case .transferLeader:
            startTransfer(to: m.index)
        case .appendResponse:
            handleAppendResponse(m)
        case .heartbeatResponse:
            handleHeartbeatResponse(m)
        default:
            break
        }
    }

    mutating func handleAppendResponse(_ m: Message) {
        guard let i = tracker.slot(m.from) else { return }
        tracker.progress[i].recentActive = true
        if m.reject {
            // Use the follower's hint, then skip every leader entry whose term exceeds the term the follower
            // has at the hint: none of them can match.
            var next = m.rejectHint
            if m.logTerm > 0 {
                next = log.findConflictByTerm(index: m.rejectHint, term: m.logTerm).index
            }
            if tracker.progress[i].maybeDecrease(rejected: m.index, hint: next) {
                if tracker.progress[i].state == .replicate { tracker.progress[i].becomeProbe() }
                sendAppend(slot: i, sendIfEmpty: true)
            }
            return
        }
        // An acknowledgement of entries we do not have was not an answer to anything we sent: counting it as a
        // match would let the commit index run past the log.
        guard m.index <= log.lastIndex else { return }
        let wasPaused = tracker.progress[i].isPaused
        guard tracker.progress[i].maybeUpdate(m.index) else {
            if wasPaused && tracker.progress[i].state == .probe { tracker.progress[i].probeSent = false }
            return
        }
        switch tracker.progress[i].state {
        case .probe:
            tracker.progress[i].becomeReplicate()
        case .snapshot where tracker.progress[i].match >= tracker.progress[i].pendingSnapshot:
            tracker.progress[i].becomeProbe()
            tracker.progress[i].becomeReplicate()
        case .replicate:
            tracker.progress[i].inflights.free(through: m.index)
        case .snapshot:
            break
        }
        if maybeCommit() {
            needsBroadcast = true
        } else {
            while sendAppend(slot: i, sendIfEmpty: false) {}
        }
        if m.from == leadTransferee && tracker.progress[i].match == log.lastIndex {
            send(Message(kind: .timeoutNow, to: m.from))
        }
    }

    mutating func handleHeartbeatResponse(_ m: Message) {
        guard let i = tracker.slot(m.from) else { return }
        tracker.progress[i].recentActive = true
        tracker.progress[i].probeSent = false
        if tracker.progress[i].state == .replicate && tracker.progress[i].inflights.isFull {
            // The follower is alive but an ack was lost: free one slot so replication does not stall.
            tracker.progress[i].inflights.freeFirst()
        }
        if tracker.progress[i].match < log.lastIndex || tracker.progress[i].sentCommit < log.committed {
            sendAppend(slot: i, sendIfEmpty: true)
        }
        if let (round, sentTick) = ReadOnlyQueue.decode(m.context), sentTick <= tickCount {
            if sentTick + 1 > tracker.progress[i].leaseSent { tracker.progress[i].leaseSent = sentTick + 1 }
            if round > tracker.progress[i].readAck { tracker.progress[i].readAck = round }
            releaseConfirmedReads()
        }
    }

    /// Advances the commit index to what a quorum stores, but only through an entry of the current term:
    /// an older entry on a majority can still be overwritten by a leader of a later term (Raft §5.4.2,
    /// figure 8), while an entry of the current term on a majority cannot, and commits its prefix with it.
    mutating func maybeCommit() -> Bool {
        var candidate = tracker.quorumMatch()
        if let added = addedVoterCommit(), added > candidate { candidate = added }
        guard candidate > log.committed else { return false }
        if config.testingMutation != .commitOlderTermByCount {
            guard log.term(at: candidate) == term else { return false }
        }
        let wasCommittedInTerm = committedInTerm
        var freed = 0
        var i = log.committed + 1
        while i <= candidate {
            freed += log.entry(at: i).data.count
            i += 1
        }
        uncommittedSize = max(0, uncommittedSize - freed)
        log.commit(to: candidate)
        if !wasCommittedInTerm && committedInTerm {
            let waiting = reads.waitingForCommit
            reads.waitingForCommit.removeAll()
            for r in waiting { handleReadIndex(from: r.from, context: r.context) }
        }
        if !tracker.isVoter(id), let lastConf = confChanges.last, lastConf.index <= log.committed {
            stepDownAfterRemoval()
        }
        return true
    }

    var committedInTerm: Bool { log.term(at: log.committed) == term }

    /// The index of a pending configuration entry that adds one voter, when a majority of the configuration
    /// *before* it stores it; nil otherwise.
    ///
    /// A configuration takes effect here when it is appended, so the entry that grows a one-voter cluster to two
    /// would need the new, not yet started member to commit it, and `member add` on a single member (the first step
    /// of etcd's documented restore and of recovering from a lost quorum) could never complete. etcd's Raft commits
    /// such an entry under the old configuration. Both are safe for a single-member change: every majority of the
    /// old configuration intersects every majority of the new one, so a later leader, elected by either, holds the
    /// entry. Only the newest configuration entry qualifies, only when it is the only uncommitted one, and only an
    /// entry of the current term (checked by the caller) commits.
    func addedVoterCommit() -> UInt64? {
        guard let last = confChanges.last, last.index > log.committed else { return nil }
        if confChanges.count > 1, confChanges[confChanges.count - 2].index > log.committed { return nil }
        let before = confState(at: last.index - 1)
        guard last.conf.voters.count == before.voters.count + 1,
            before.voters.allSatisfy({ last.conf.voters.contains($0) })
        else { return nil }
        var matches: [UInt64] = []
        for pr in tracker.progress where before.voters.contains(pr.id) { matches.append(pr.match) }
        guard matches.count == before.voters.count, !matches.isEmpty else { return nil }
        matches.sort(by: >)
        return matches[matches.count / 2] >= last.index ? last.index : nil
    }

    /// The leader's removal (or demotion) is committed: it no longer belongs in the quorum. Hand leadership
    /// to the most up-to-date voter so the cluster does not wait a whole election timeout, then step down.
    mutating func stepDownAfterRemoval() {
        var best: Progress?
        for pr in tracker.progress where !pr.isLearner && pr.id != id {
            if best == nil || pr.match > best!.match { best = pr }
        }
        if let best {
            // Bring it up to date first; the TimeoutNow goes out with the same Ready.
            needsBroadcast = true
            flushBroadcast()
            if best.match == log.lastIndex {
                send(Message(kind: .timeoutNow, to: best.id))
            }
        }
        becomeFollower(term: term, lead: 0)
    }

    // MARK: - Sending

    mutating func send(_ message: Message) {
        var m = message
        m.from = id
        switch m.kind {
        case .propose, .readIndex, .transferLeader:
            m.term = 0
        case .requestVote, .requestPreVote:
            precondition(m.term > term || (m.term == term && role == .candidate), "vote requests carry their term")
        case .requestVoteResponse, .requestPreVoteResponse:
            break  // Their term is set explicitly: the candidate's for a granted pre-vote, ours otherwise.
        default:
            m.term = term
        }
        if m.requiresPersistence
            && !(m.kind == .appendResponse && config.testingMutation == .followerAcksBeforePersist)
        {
            msgsAfterPersist.append(m)
        } else {
            msgs.append(m)
        }
    }

    /// Sends the next batch of entries to the member at `slot` if its flow control allows. Returns whether
    /// something was sent.
    @discardableResult
    mutating func sendAppend(slot i: Int, sendIfEmpty: Bool) -> Bool {
        let pr = tracker.progress[i]
        guard pr.id != id, !pr.isPaused else { return false }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(at: prevIndex),
            let entries = log.entries(from: pr.next, maxBytes: config.maxSizePerMessage)
        else {
            return sendSnapshot(slot: i)
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        let commit = log.committed
        send(
            Message(
                kind: .append, to: pr.id, logTerm: prevTerm, index: prevIndex, entries: entries, commit: commit))
        tracker.progress[i].sentCommit = commit
        switch pr.state {
        case .replicate:
            if let last = entries.last {
                var bytes = 0
                for e in entries { bytes += e.byteSize }
                tracker.progress[i].next = last.index + 1
                tracker.progress[i].inflights.add(index: last.index, bytes: bytes)
            }
        case .probe:
            tracker.progress[i].probeSent = true
        case .snapshot:
            preconditionFailure("append sent to a member in snapshot state")
        }
        return true
    }

    mutating func sendSnapshot(slot i: Int) -> Bool {
        let pr = tracker.progress[i]
        // Only to members we recently heard from: a snapshot is expensive and a dead member wastes it.
        guard pr.recentActive, let snap = snapshot else { return false }
        send(Message(kind: .snapshot, to: pr.id, snapshot: snap))
        tracker.progress[i].becomeSnapshot(index: snap.metadata.index)
        return true
    }

    mutating func broadcastHeartbeat() {
        let context = ReadOnlyQueue.encode(round: reads.lastRound, tick: tickCount)
        for pr in tracker.progress where pr.id != id {
            // Never tell a member to commit beyond what it is known to store.
            let commit = min(pr.match, log.committed)
            send(Message(kind: .heartbeat, to: pr.id, commit: commit, context: context))
        }
    }

    /// Sends what the batched proposals and commit advances call for: new entries to every member whose
    /// window allows it, and an empty append to spread a new commit index to those that have everything.
    mutating func flushBroadcast() {
        guard role == .leader else {
            needsBroadcast = false
            needsReadHeartbeat = false
            return
        }
        if needsBroadcast {
            needsBroadcast = false
            for i in tracker.progress.indices where tracker.progress[i].id != id {
                var sent = false
                while sendAppend(slot: i, sendIfEmpty: false) { sent = true }
                if !sent && tracker.progress[i].sentCommit < log.committed {
                    sendAppend(slot: i, sendIfEmpty: true)
                }
                if tracker.progress[i].id == leadTransferee && tracker.progress[i].match == log.lastIndex
                    && !msgs.contains(where: { $0.kind == .timeoutNow && $0.to == leadTransferee })
                {
                    send(Message(kind: .timeoutNow, to: leadTransferee))
                }
            }
        }
        if needsReadHeartbeat {
            needsReadHeartbeat = false
            broadcastHeartbeat()
        }
    }

    // MARK: - Reads

    mutating func handleReadIndex(from: NodeID, context: [UInt8]) {
        guard committedInTerm else {
            reads.waitingForCommit.append((from, context))
            return
        }
        let lone = tracker.voterCount == 1 && tracker.isVoter(id)
        if lone || (config.readOnlyOption == .leaseBased && hasLease())
            || config.testingMutation == .readIndexWithoutQuorumCheck
        {
            respondToRead(from: from, index: log.committed, context: context)
            return
        }
        _ = reads.add(index: log.committed, from: from, context: context)
        needsReadHeartbeat = true
    }

    /// Whether a quorum of voters acknowledged a heartbeat recently enough that none of them can have voted
    /// for another candidate yet: each promised to ignore vote requests for `electionTick` of its ticks after
    /// receiving it. Two ticks of margin absorb the phase offset between members' tick timers and a bounded
    /// clock drift; a leader transfer forfeits the lease for the term (the transferee's election overrides
    /// promises).
    mutating func hasLease() -> Bool {
        guard !transferAttempted, config.checkQuorum else { return false }
        if let me = tracker.slot(id) { tracker.progress[me].leaseSent = tickCount + 1 }
        let oldest = tracker.quorumValue { $0.leaseSent }
        guard oldest > 0 else { return false }
        let span = UInt64(max(config.electionTick - 2, 1))
        return oldest - 1 + span > tickCount
    }

    mutating func releaseConfirmedReads() {
        guard !reads.isEmpty else { return }
        if let me = tracker.slot(id) { tracker.progress[me].readAck = reads.lastRound }
        let confirmed = tracker.quorumValue { $0.readAck }
        for r in reads.release(through: confirmed) {
            respondToRead(from: r.from, index: r.index, context: r.context)
        }
    }

    mutating func respondToRead(from: NodeID, index: UInt64, context: [UInt8]) {
        if from == id {
            readStates.append(ReadState(index: index, context: context))
        } else {
            send(Message(kind: .readIndexResponse, to: from, index: index, context: context))
        }
    }

    // MARK: - Ready

    /// Whether `ready()` would return anything.
    public func hasReady() -> Bool {
        if readyInFlight { return false }
        if needsBroadcast || needsReadHeartbeat { return true }
        if !msgs.isEmpty || !msgsAfterPersist.isEmpty || !readStates.isEmpty || !droppedReads.isEmpty { return true }
        if log.hasUnstable || log.pendingSnapshot != nil || log.hasNextCommitted { return true }
        if SoftState(leader: lead, role: role) != lastSoftState { return true }
        return hardStateToReport != lastHardState
    }

    var hardStateToReport: HardState {
        HardState(
            term: term, vote: config.testingMutation == .skipVotePersistence ? 0 : vote, commit: log.committed)
    }

    /// Collects the pending work. Must be followed by `advance` before the next call; `step`, `tick` and
    /// requests may be interleaved between the two.
    public mutating func ready() -> Ready {
        precondition(!readyInFlight, "advance() the previous Ready before asking for the next one")
        flushBroadcast()
        var rd = Ready()
        let soft = SoftState(leader: lead, role: role)
        if soft != lastSoftState {
            rd.softState = soft
            lastSoftState = soft
        }
        let hard = hardStateToReport
        if hard != lastHardState {
            rd.hardState = hard
            rd.mustSync = hard.term != lastHardState.term || hard.vote != lastHardState.vote
            lastHardState = hard
        }
        if let snap = log.pendingSnapshot {
            rd.snapshot = snap
            log.pendingSnapshot = nil
            rd.mustSync = true
        }
        rd.entries = log.takeUnstable()
        if !rd.entries.isEmpty { rd.mustSync = true }
        rd.committedEntries = log.takeCommitted(maxBytes: config.maxCommittedSizePerReady)
        for e in rd.committedEntries where e.kind == .confChange { confEntriesToApply.append(e.index) }
        swap(&rd.messages, &msgs)
        swap(&rd.messagesAfterPersist, &msgsAfterPersist)
        swap(&rd.readStates, &readStates)
        swap(&rd.droppedReadIndexes, &droppedReads)
        readyInFlight = true
        return rd
    }

    /// The application has persisted and applied everything `ready` held. The leader counts its own newly
    /// durable entries toward commit only now.
    public mutating func advance(_ ready: Ready) {
        precondition(readyInFlight, "advance() without a Ready in flight")
        readyInFlight = false
        if let last = ready.entries.last {
            log.persisted(through: last.index)
        } else if let snap = ready.snapshot {
            log.persisted(through: snap.metadata.index)
        }
        if let snap = ready.snapshot { log.applied = max(log.applied, snap.metadata.index) }
        if let last = ready.committedEntries.last {
            precondition(last.index > log.applied || ready.snapshot != nil, "applied index must grow")
            log.applied = max(log.applied, last.index)
        }
        precondition(log.applied <= log.committed, "applied beyond commit")
        if role == .leader, let me = tracker.slot(id) {
            if ownMatch > tracker.progress[me].match {
                tracker.progress[me].match = ownMatch
                if maybeCommit() { needsBroadcast = true }
            }
        }
    }
}
