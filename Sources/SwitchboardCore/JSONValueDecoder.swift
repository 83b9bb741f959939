import Foundation

/// Decodes `Decodable` types from a parsed `JSONValue` tree (see `JSONParser`).
///
/// Together they replace Foundation's JSONDecoder on every hot path: `JSONValue` members decode
/// by taking the subtree as it is, instead of guessing their type by trial and error. Errors
/// are the standard `DecodingError`s with the coding path, so API problems still name the field.
public enum JSONValueDecoder {
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try Node(value, path: []).decodeValue(type)
    }

    final class Node: Decoder {
        let value: JSONValue
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        init(_ value: JSONValue, path: [any CodingKey]) { self.value = value; self.codingPath = path }

        func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
            // Leaf types and JSONValue without a container.
            if T.self == JSONValue.self { return value as! T }
            if T.self == String.self { return try string() as! T }
            if T.self == JSONObject.self {
                guard case .object(let o) = value else { throw mismatch(type, "an object") }
                return o as! T
            }
            if T.self == URL.self {
                guard let u = URL(string: try string()) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "not a valid URL"))
                }
                return u as! T
            }
            return try T(from: self)
        }

        func mismatch(_ type: Any.Type, _ expected: String) -> DecodingError {
            if case .null = value {
                return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "expected \(expected), found null"))
            }
            return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(expected), found \(Self.kind(value))"))
        }

        static func kind(_ v: JSONValue) -> String {
            switch v {
            case .null: return "null"
            case .bool: return "a boolean"
            case .int, .double: return "a number"
            case .string: return "a string"
            case .array: return "an array"
            case .object: return "an object"
            }
        }

        func string() throws -> String {
            guard case .string(let s) = value else { throw mismatch(String.self, "a string") }
            return s
        }
        func bool() throws -> Bool {
            guard case .bool(let b) = value else { throw mismatch(Bool.self, "a boolean") }
            return b
        }
        func double() throws -> Double {
            switch value {
            case .double(let d): return d
            case .int(let i): return Double(i)
            default: throw mismatch(Double.self, "a number")
            }
        }
        func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
            switch value {
            case .int(let i):
                guard let v = I(exactly: i) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(i) does not fit in \(I.self)"))
                }
                return v
            case .double(let d):
                guard let v = I(exactly: d) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(d) is not a whole number that fits in \(I.self)"))
                }
                return v
            default: throw mismatch(I.self, "a number")
            }
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let o) = value else { throw mismatch([String: JSONValue].self, "an object") }
            return KeyedDecodingContainer(Keyed<Key>(object: o, path: codingPath))
        }
        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .array(let a) = value else { throw mismatch([JSONValue].self, "an array") }
            return Unkeyed(array: a, path: codingPath)
        }
        func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(node: self) }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let object: JSONObject
        let path: [any CodingKey]
        var codingPath: [any CodingKey] { path }
        var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

        init(object: JSONObject, path: [any CodingKey]) { self.object = object; self.path = path }

        func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

        func node(_ key: Key) throws -> Node {
            guard let v = object[key.stringValue] else {
                throw DecodingError.keyNotFound(key, .init(codingPath: path, debugDescription: "missing member \"\(key.stringValue)\""))
            }
            return Node(v, path: path + [key])
        }

        func decodeNil(forKey key: Key) throws -> Bool {
            guard let v = object[key.stringValue] else { return true }
            return v.isNull
        }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try node(key).bool() }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try node(key).string() }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try node(key).double() }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try node(key).double()) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try node(key).integer(Int.self) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try node(key).integer(Int8.self) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try node(key).integer(Int16.self) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try node(key).integer(Int32.self) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try node(key).integer(Int64.self) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try node(key).integer(UInt.self) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try node(key).integer(UInt8.self) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try node(key).integer(UInt16.self) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try node(key).integer(UInt32.self) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try node(key).integer(UInt64.self) }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try node(key).decodeValue(type) }

        // Missing or null members are nil, as with JSONDecoder.
        func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
            guard let v = object[key.stringValue], !v.isNull else { return nil }
            if case .string(let s) = v { return s }
            return try Node(v, path: path + [key]).string()
        }
        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let v = object[key.stringValue], !v.isNull else { return nil }
            return try Node(v, path: path + [key]).decodeValue(type)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try node(key).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try node(key).unkeyedContainer() }
        func superDecoder() throws -> any Decoder { Node(object["super"] ?? .null, path: path + [AnyCodingKey("super")]) }
        func superDecoder(forKey key: Key) throws -> any Decoder { Node(object[key.stringValue] ?? .null, path: path + [key]) }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let array: [JSONValue]
        let path: [any CodingKey]
        var currentIndex = 0
        var codingPath: [any CodingKey] { path }
        var count: Int? { array.count }
        var isAtEnd: Bool { currentIndex >= array.count }

        init(array: [JSONValue], path: [any CodingKey]) { self.array = array; self.path = path }

        mutating func nextNode<T>(_ type: T.Type) throws -> Node {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(type, .init(codingPath: path + [AnyCodingKey(intValue: currentIndex)!], debugDescription: "the array has no more elements"))
            }
            defer { currentIndex += 1 }
            return Node(array[currentIndex], path: path + [AnyCodingKey(intValue: currentIndex)!])
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd else { return false }
            if array[currentIndex].isNull { currentIndex += 1; return true }
            return false
        }
        mutating func decode(_ type: Bool.Type) throws -> Bool { try nextNode(type).bool() }
        mutating func decode(_ type: String.Type) throws -> String { try nextNode(type).string() }
        mutating func decode(_ type: Double.Type) throws -> Double { try nextNode(type).double() }
        mutating func decode(_ type: Float.Type) throws -> Float { Float(try nextNode(type).double()) }
        mutating func decode(_ type: Int.Type) throws -> Int { try nextNode(type).integer(Int.self) }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { try nextNode(type).integer(Int8.self) }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { try nextNode(type).integer(Int16.self) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { try nextNode(type).integer(Int32.self) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { try nextNode(type).integer(Int64.self) }
        mutating func decode(_ type: UInt.Type) throws -> UInt { try nextNode(type).integer(UInt.self) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try nextNode(type).integer(UInt8.self) }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try nextNode(type).integer(UInt16.self) }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try nextNode(type).integer(UInt32.self) }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try nextNode(type).integer(UInt64.self) }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try nextNode(type).decodeValue(type) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            try nextNode(JSONObject.self).container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try nextNode([JSONValue].self).unkeyedContainer() }
        mutating func superDecoder() throws -> any Decoder { try nextNode(JSONValue.self) }
    }

    struct Single: SingleValueDecodingContainer {
        let node: Node
        var codingPath: [any CodingKey] { node.codingPath }
        func decodeNil() -> Bool { node.value.isNull }
        func decode(_ type: Bool.Type) throws -> Bool { try node.bool() }
        func decode(_ type: String.Type) throws -> String { try node.string() }
        func decode(_ type: Double.Type) throws -> Double { try node.double() }
        func decode(_ type: Float.Type) throws -> Float { Float(try node.double()) }
        func decode(_ type: Int.Type) throws -> Int { try node.integer(Int.self) }
        func decode(_ type: Int8.Type) throws -> Int8 { try node.integer(Int8.self) }
        func decode(_ type: Int16.Type) throws -> Int16 { try node.integer(Int16.self) }
        func decode(_ type: Int32.Type) throws -> Int32 { try node.integer(Int32.self) }
        func decode(_ type: Int64.Type) throws -> Int64 { try node.integer(Int64.self) }
        func decode(_ type: UInt.Type) throws -> UInt { try node.integer(UInt.self) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try node.integer(UInt8.self) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try node.integer(UInt16.self) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try node.integer(UInt32.self) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try node.integer(UInt64.self) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try node.decodeValue(type) }
    }
}
