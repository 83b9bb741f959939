import Foundation

/// A coding key for arbitrary JSON member names.
public struct AnyCodingKey: CodingKey, Hashable, Sendable {
    public var stringValue: String
    public var intValue: Int?
    public init(_ s: String) { stringValue = s; intValue = nil }
    public init?(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    public init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

/// The fields of a typed JSON object, with an explicit list of the member names it knows.
/// Types list their `CodingKeys` as `CaseIterable` so the list can't drift from the coding.
public protocol KnownFields: Codable, Sendable, Hashable {
    associatedtype Keys: CodingKey & CaseIterable
}

extension KnownFields {
    static var knownNames: Set<String> { Set(Keys.allCases.map(\.stringValue)) }
}

/// A typed JSON object that keeps every member it does not know.
///
/// Forward compatibility is part of the contract: a helpdesk or a newer Switchboard may add
/// fields, and a message read from the store or passed through the API must come out with them
/// intact. `Open<Fields>` decodes the known fields into `fields` and everything else into
/// `extra`, and writes both back. Known fields read through dynamic member lookup
/// (`part.text`), so call sites look like plain structs.
@dynamicMemberLookup
public struct Open<Fields: KnownFields>: Codable, Sendable, Hashable {
    public var fields: Fields
    public var extra: JSONObject

    public init(_ fields: Fields, extra: JSONObject = [:]) {
        self.fields = fields
        self.extra = extra
    }

    public subscript<T>(dynamicMember keyPath: WritableKeyPath<Fields, T>) -> T {
        get { fields[keyPath: keyPath] }
        set { fields[keyPath: keyPath] = newValue }
    }

    public init(from decoder: any Decoder) throws {
        fields = try Fields(from: decoder)
        var extra: JSONObject = [:]
        // Unknown members: those the fields' CodingKeys can't name (a switch, not a Set built
        // per value — this runs for every part of every message read).
        if let node = decoder as? JSONValueDecoder.Node, case .object(let o) = node.value {
            for (k, v) in o where Fields.Keys(stringValue: k) == nil { extra[k] = v }
        } else {
            let all = try decoder.container(keyedBy: AnyCodingKey.self)
            for key in all.allKeys where Fields.Keys(stringValue: key.stringValue) == nil {
                extra[key.stringValue] = try all.decode(JSONValue.self, forKey: key)
            }
        }
        self.extra = extra
    }

    public func encode(to encoder: any Encoder) throws {
        try fields.encode(to: encoder)
        guard !extra.isEmpty else { return }
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        for k in extra.keys.sorted() where Fields.Keys(stringValue: k) == nil {
            let v = extra[k]!
            try c.encode(v, forKey: AnyCodingKey(k))
        }
    }
}

/// An open set of string values (event types, part kinds, channel types): known values are
/// static members, unknown ones still decode and pass through.
public protocol OpenStringEnum: RawRepresentable, Codable, Hashable, Sendable, ExpressibleByStringLiteral,
    CustomStringConvertible where RawValue == String
{
    init(rawValue: String)
}

extension OpenStringEnum {
    public init(stringLiteral value: String) { self.init(rawValue: value) }
    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
    public var description: String { rawValue }
}
