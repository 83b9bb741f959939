import Foundation

/// Writes JSON text into a byte buffer. Escaping matches what the project has always produced:
/// `"` `\` and control characters escaped, `/` and non-ASCII written as they are (UTF-8).
public struct JSONWriter {
    public var bytes: [UInt8] = []

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    @inline(__always) public mutating func raw(_ b: UInt8) { bytes.append(b) }
    public mutating func raw(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
    public mutating func raw(_ b: some Collection<UInt8>) { bytes.append(contentsOf: b) }

    public mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { u in
            bytes.append(UInt8(ascii: "\""))
            var clean = u.startIndex
            for k in u.indices {
                let c = u[k]
                guard c < 0x20 || c == 0x22 || c == 0x5C else { continue }
                if clean < k { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[clean..<k])) }
                clean = k + 1
                switch c {
                case 0x22: raw("\\\"")
                case 0x5C: raw("\\\\")
                case 0x0A: raw("\\n")
                case 0x0D: raw("\\r")
                case 0x09: raw("\\t")
                case 0x08: raw("\\b")
                case 0x0C: raw("\\f")
                default:
                    raw("\\u00")
                    bytes.append(Self.hex[Int(c >> 4)])
                    bytes.append(Self.hex[Int(c & 0xF)])
                }
            }
            if clean < u.endIndex { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[clean..<u.endIndex])) }
            bytes.append(UInt8(ascii: "\""))
        }
    }
    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    public mutating func int(_ v: Int64) {
        if v >= 0 && v < 10 { bytes.append(UInt8(ascii: "0") + UInt8(v)); return }
        bytes.append(contentsOf: String(v).utf8)
    }
    public mutating func uint(_ v: UInt64) { bytes.append(contentsOf: String(v).utf8) }

    /// `v` in decimal, left-padded with zeros to at least `width` digits; negative numbers are
    /// written as 0 (this is for dates and sequence numbers).
    public mutating func zeroPadded(_ v: Int64, width: Int) {
        var buffer: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for any Int64
        withUnsafeMutableBytes(of: &buffer) { b in
            var n = UInt64(max(v, 0)), i = b.count
            repeat {
                i -= 1
                b[i] = UInt8(ascii: "0") + UInt8(n % 10)
                n /= 10
            } while n > 0
            while b.count - i < width && i > 0 { i -= 1; b[i] = UInt8(ascii: "0") }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[i...]))
        }
    }

    public mutating func double(_ v: Double) throws {
        guard v.isFinite else {
            throw EncodingError.invalidValue(v, .init(codingPath: [], debugDescription: "JSON has no \(v)"))
        }
        // Integral values print without ".0", as JSONEncoder did.
        if v == v.rounded(), abs(v) < 1e15 { int(Int64(v)); return }
        bytes.append(contentsOf: "\(v)".utf8)
    }

    /// A JSONValue; object members in sorted order so the same value always gives the same bytes.
    public mutating func value(_ v: JSONValue) throws {
        switch v {
        case .null: raw("null")
        case .bool(let b): if b { raw("true") } else { raw("false") }
        case .int(let i): int(i)
        case .double(let d): try double(d)
        case .string(let s): string(s)
        case .array(let a):
            raw(UInt8(ascii: "["))
            for (k, e) in a.enumerated() {
                if k > 0 { raw(UInt8(ascii: ",")) }
                try value(e)
            }
            raw(UInt8(ascii: "]"))
        case .object(let o): try object(o)
        }
    }

    public mutating func object(_ o: JSONObject) throws {
        raw(UInt8(ascii: "{"))
        if o.count == 1, let (k, v) = o.first {
            string(k); raw(UInt8(ascii: ":")); try value(v)
        } else {
            for (n, k) in o.keys.sorted().enumerated() {
                if n > 0 { raw(UInt8(ascii: ",")) }
                string(k); raw(UInt8(ascii: ":")); try value(o[k]!)
            }
        }
        raw(UInt8(ascii: "}"))
    }
}

/// A streaming `Encoder`: writes JSON as `encode(to:)` runs, with no intermediate tree.
///
/// Object members come out sorted by name, as Foundation's `.sortedKeys` wrote them (the stored
/// and signed bytes are reproducible, and clients may rely on the order): each object's members
/// are written as they come and, only when they came out of order, their byte ranges are
/// rearranged once the object is complete. Foundation's JSONEncoder built a boxed tree and
/// sorted every object; on the ingest path that was the largest single cost. Containers must be used in order, as synthesized and
/// hand-written conformances do: a nested container is closed when its parent writes its next
/// member or finishes.
public enum StreamingJSONEncoder {
    /// `fastPaths: false` writes every value through `encode(to:)`, not its `JSONWritable`
    /// writer (for a writer that declines, and for tests comparing the two).
    public static func encode<T: Encodable>(_ value: T, capacity: Int = 512, fastPaths: Bool = true) throws -> [UInt8] {
        let sink = Sink(capacity: capacity, fastPaths: fastPaths)
        try sink.encodeValue(value, path: [])
        return sink.w.bytes
    }

    final class Sink {
        var w: JSONWriter
        let fastPaths: Bool
        init(capacity: Int, fastPaths: Bool) { w = JSONWriter(capacity: capacity); self.fastPaths = fastPaths }

        func encodeValue<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
            // Fast paths for the leaf types and JSONValue (no containers, no boxing).
            switch value {
            case let s as String: w.string(s); return
            case let v as JSONValue: try w.value(v); return
            case let o as JSONObject: try w.object(o); return
            case let b as Bool: if b { w.raw("true") } else { w.raw("false") }; return
            case let i as Int: w.int(Int64(i)); return
            case let i as Int64: w.int(i); return
            case let d as Double: try w.double(d); return
            case let i as Int32: w.int(Int64(i)); return
            case let u as UInt64: w.uint(u); return
            case let u as UInt: w.uint(UInt64(u)); return
            case let f as Float: try w.double(Double(f)); return
            case let u as URL: w.string(u.absoluteString); return
            default: break
            }
            // After the leaves, which are most values: the cast to an existential costs more
            // than theirs.
            if fastPaths, let v = value as? any JSONWritable, try v.writeJSON(to: &w) { return }
            let e = Node(sink: self, path: path)
            try value.encode(to: e)
            e.finish()
        }
    }

    /// One value being encoded: becomes an object, an array or a single value on first use.
    final class Node: Encoder {
        enum Kind { case none, object, array, single }
        let sink: Sink
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        var kind = Kind.none
        var count = 0
        var child: Node?
        /// Each member's name and where it starts (its comma included) in the sink, for sorting.
        var members: [(name: String, start: Int)] = []

        init(sink: Sink, path: [any CodingKey]) { self.sink = sink; self.codingPath = path }

        func closeChild() {
            if let c = child { child = nil; c.finish() }
        }

        func finish() {
            closeChild()
            switch kind {
            case .none: sink.w.raw("{}")  // encoded nothing: an empty object, as JSONEncoder wrote
            case .object:
                sortMembers()
                sink.w.raw(UInt8(ascii: "}"))
            case .array: sink.w.raw(UInt8(ascii: "]"))
            case .single: break
            }
        }

        func open(_ k: Kind) {
            if kind == .none {
                kind = k
                switch k {
                case .object: sink.w.raw(UInt8(ascii: "{"))
                case .array: sink.w.raw(UInt8(ascii: "["))
                default: break
                }
            }
        }

        /// Starts the next member/element: closes an open nested container, writes the separator.
        func next() {
            closeChild()
            if count > 0 { sink.w.raw(UInt8(ascii: ",")) }
            count += 1
        }

        func key(_ k: some CodingKey) {
            members.append((k.stringValue, sink.w.bytes.count))
            next()
            sink.w.string(k.stringValue)
            sink.w.raw(UInt8(ascii: ":"))
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            open(.object)
            return KeyedEncodingContainer(Keyed<Key>(node: self))
        }
        func unkeyedContainer() -> any UnkeyedEncodingContainer { open(.array); return Unkeyed(node: self) }
        func singleValueContainer() -> any SingleValueEncodingContainer { open(.single); return Single(node: self) }

        /// Rearranges this object's members into name order, if they are not in it already.
        func sortMembers() {
            guard members.count > 1 else { return }
            var sorted = true
            for k in 1..<members.count where members[k - 1].name > members[k].name { sorted = false; break }
            if sorted { return }
            let end = sink.w.bytes.count
            let base = members[0].start
            let region = Array(sink.w.bytes[base..<end])
            var ranges: [(name: String, range: Range<Int>)] = []
            ranges.reserveCapacity(members.count)
            for (k, m) in members.enumerated() {
                var from = m.start - base
                if k > 0 { from += 1 }  // skip the separating comma
                let to = (k + 1 < members.count ? members[k + 1].start : end) - base
                ranges.append((m.name, from..<to))
            }
            // Stable: a name written twice keeps its order (the later one wins for readers).
            let order = ranges.indices.sorted { a, b in
                ranges[a].name != ranges[b].name ? ranges[a].name < ranges[b].name : a < b
            }
            sink.w.bytes.removeSubrange(base..<end)
            for (n, i) in order.enumerated() {
                if n > 0 { sink.w.raw(UInt8(ascii: ",")) }
                sink.w.bytes.append(contentsOf: region[ranges[i].range])
            }
        }

        func nested(path: [any CodingKey]) -> Node {
            let n = Node(sink: sink, path: path)
            child = n
            return n
        }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: Node
        var codingPath: [any CodingKey] { node.codingPath }

        mutating func encodeNil(forKey key: Key) throws { node.key(key); node.sink.w.raw("null") }
        mutating func encode(_ value: Bool, forKey key: Key) throws { node.key(key); node.sink.w.raw(value ? "true" : "false") }
        mutating func encode(_ value: String, forKey key: Key) throws { node.key(key); node.sink.w.string(value) }
        mutating func encode(_ value: Double, forKey key: Key) throws { node.key(key); try node.sink.w.double(value) }
        mutating func encode(_ value: Float, forKey key: Key) throws { node.key(key); try node.sink.w.double(Double(value)) }
        mutating func encode(_ value: Int, forKey key: Key) throws { node.key(key); node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { node.key(key); node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { node.key(key); node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { node.key(key); node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { node.key(key); node.sink.w.int(value) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { node.key(key); node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { node.key(key); node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { node.key(key); node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { node.key(key); node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { node.key(key); node.sink.w.uint(value) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            node.key(key)
            try node.sink.encodeValue(value, path: node.codingPath + [key])
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            node.key(key)
            return node.nested(path: node.codingPath + [key]).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            node.key(key)
            return node.nested(path: node.codingPath + [key]).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            node.key(AnyCodingKey("super"))
            return node.nested(path: node.codingPath + [AnyCodingKey("super")])
        }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            node.key(key)
            return node.nested(path: node.codingPath + [key])
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let node: Node
        var codingPath: [any CodingKey] { node.codingPath }
        var count: Int { node.count }

        mutating func encodeNil() throws { node.next(); node.sink.w.raw("null") }
        mutating func encode(_ value: Bool) throws { node.next(); node.sink.w.raw(value ? "true" : "false") }
        mutating func encode(_ value: String) throws { node.next(); node.sink.w.string(value) }
        mutating func encode(_ value: Double) throws { node.next(); try node.sink.w.double(value) }
        mutating func encode(_ value: Int) throws { node.next(); node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int64) throws { node.next(); node.sink.w.int(value) }
        mutating func encode<T: Encodable>(_ value: T) throws {
            let index = node.count
            node.next()
            try node.sink.encodeValue(value, path: node.codingPath + [AnyCodingKey(intValue: index)!])
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let index = node.count
            node.next()
            return node.nested(path: node.codingPath + [AnyCodingKey(intValue: index)!]).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let index = node.count
            node.next()
            return node.nested(path: node.codingPath + [AnyCodingKey(intValue: index)!]).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            let index = node.count
            node.next()
            return node.nested(path: node.codingPath + [AnyCodingKey(intValue: index)!])
        }
    }

    struct Single: SingleValueEncodingContainer {
        let node: Node
        var codingPath: [any CodingKey] { node.codingPath }
        mutating func encodeNil() throws { node.sink.w.raw("null") }
        mutating func encode(_ value: Bool) throws { node.sink.w.raw(value ? "true" : "false") }
        mutating func encode(_ value: String) throws { node.sink.w.string(value) }
        mutating func encode(_ value: Double) throws { try node.sink.w.double(value) }
        mutating func encode(_ value: Float) throws { try node.sink.w.double(Double(value)) }
        mutating func encode(_ value: Int) throws { node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int8) throws { node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int16) throws { node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int32) throws { node.sink.w.int(Int64(value)) }
        mutating func encode(_ value: Int64) throws { node.sink.w.int(value) }
        mutating func encode(_ value: UInt) throws { node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt8) throws { node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt16) throws { node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt32) throws { node.sink.w.uint(UInt64(value)) }
        mutating func encode(_ value: UInt64) throws { node.sink.w.uint(value) }
        mutating func encode<T: Encodable>(_ value: T) throws { try node.sink.encodeValue(value, path: node.codingPath) }
    }
}
