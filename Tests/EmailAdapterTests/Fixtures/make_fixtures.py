#!/usr/bin/env python3
"""Writes the MIME fixture corpus used by EmailAdapterTests.

Every non-UTF-8 fixture is produced with Python's own codecs (or, for the CP50220 extension
characters, by moving CP932 bytes to their JIS positions), so the bytes on disk are genuinely in
the declared charset and independent of the Swift decoder under test. Run from this directory:
    python3 make_fixtures.py
"""
import base64, quopri, os

HERE = os.path.dirname(os.path.abspath(__file__))

def b64(data: bytes, width=76) -> bytes:
    s = base64.b64encode(data)
    return b"\r\n".join(s[i:i + width] for i in range(0, len(s), width))

def qp(data: bytes) -> bytes:
    return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")

def ew_b(text: str, charset: str, codec=None) -> str:
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(codec or charset)).decode())

def ew_q(text: str, charset: str, codec=None) -> str:
    out = []
    for byte in text.encode(codec or charset):
        c = chr(byte)
        if c == " ":
            out.append("_")
        elif c.isalnum() and byte < 0x80:
            out.append(c)
        else:
            out.append("=%02X" % byte)
    return "=?%s?Q?%s?=" % (charset, "".join(out))

def write(name: str, data: bytes):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)

def crlf(s: str) -> bytes:
    return s.replace("\n", "\r\n").encode("ascii")

def sjis_to_jis(sjis: bytes) -> bytes:
    """CP932 double-byte text moved to JIS X 0208 positions inside ESC $ B ... ESC ( B (CP50220)."""
    out = bytearray(b"\x1b$B")
    i = 0
    while i < len(sjis):
        s1, s2 = sjis[i], sjis[i + 1]
        i += 2
        row_base = 0x70 if s1 < 0xA0 else 0xB0
        j1 = (s1 - row_base) * 2 - 1
        if s2 >= 0x9F:
            j1 += 1
            j2 = s2 - 0x7E
        else:
            j2 = s2 - 0x1F - (1 if s2 >= 0x80 else 0)
        out += bytes([j1, j2])
    out += b"\x1b(B"
    return bytes(out)

def header_block(fields):
    return "".join("%s: %s\n" % kv for kv in fields)

# ---------------------------------------------------------------- Japanese: ISO-2022-JP
JP_SUBJECT = "【至急】注文番号1234の件について"
JP_BODY = "山田様\n\nいつもお世話になっております。\n注文した商品がまだ届いていません。\n"
JP_EXT = "①の件、㈱髙島屋より連絡済みです。"
JP_KANA = "ｶﾀｶﾅもOK"
def iso2022jp_fixture():
    subject = ew_b("【至急】注文番号", "ISO-2022-JP", "iso2022_jp") + "\n " + ew_b("1234の件について", "ISO-2022-JP", "iso2022_jp")
    name = ew_b("山田 太郎", "ISO-2022-JP", "iso2022_jp")
    head = header_block([
        ("From", '%s <Taro.Yamada@Example.JP>' % name),
        ("To", "support@example.com"),
        ("Subject", subject),
        ("Date", "Tue, 05 Mar 2024 14:15:00 +0900"),
        ("Message-ID", "<jp-iso2022@example.jp>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=ISO-2022-JP"),
        ("Content-Transfer-Encoding", "7bit"),
    ])
    body = JP_BODY.encode("iso2022_jp").replace(b"\n", b"\r\n")
    ext = sjis_to_jis(JP_EXT.encode("cp932"))
    kana = JP_KANA.encode("iso2022_jp_ext")
    write("jp-iso2022.eml", crlf(head + "\n") + body + ext + b"\r\n" + kana + b"\r\n")

# ---------------------------------------------------------------- Shift_JIS
SJIS_SUBJECT = "見積もりのお願い"
SJIS_BODY = "お見積もりをお願いします。\n型番：ＡＢ－１２３\n数量：①１０個\n"
def sjis_fixture():
    head = header_block([
        ("From", "=?Shift_JIS?B?%s?= <buyer@example.jp>" % base64.b64encode("佐藤".encode("shift_jis")).decode()),
        ("To", "support@example.com"),
        ("Subject", ew_b(SJIS_SUBJECT, "Shift_JIS", "shift_jis")),
        ("Message-ID", "<jp-sjis@example.jp>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="Shift_JIS"'),
        ("Content-Transfer-Encoding", "8bit"),
    ])
    write("jp-sjis.eml", crlf(head + "\n") + SJIS_BODY.encode("cp932").replace(b"\n", b"\r\n"))

# ---------------------------------------------------------------- EUC-JP
EUCJP_SUBJECT = "返品について"
EUCJP_BODY = "こんにちは。\n返品の手続きについて教えてください。\n"
def eucjp_fixture():
    head = header_block([
        ("From", "kimura@example.jp"),
        ("To", "support@example.com"),
        ("Subject", ew_q(EUCJP_SUBJECT, "EUC-JP", "euc_jp")),
        ("Message-ID", "<jp-eucjp@example.jp>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=euc-jp"),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ])
    write("jp-eucjp.eml", crlf(head + "\n") + qp(EUCJP_BODY.encode("euc_jp").replace(b"\n", b"\r\n")))

# ---------------------------------------------------------------- Korean
KO_EUCKR_SUBJECT = "배송 문의"
KO_EUCKR_BODY = "안녕하세요.\n배송 문의드립니다. 똠방각하\n"
def euckr_fixture():
    head = header_block([
        ("From", "%s <kim@example.kr>" % ew_b("김민수", "EUC-KR", "cp949")),
        ("To", "support@example.com"),
        ("Subject", ew_b(KO_EUCKR_SUBJECT, "EUC-KR", "cp949")),
        ("Message-ID", "<ko-euckr@example.kr>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=euc-kr"),
        ("Content-Transfer-Encoding", "base64"),
    ])
    write("ko-euckr.eml", crlf(head + "\n") + b64(KO_EUCKR_BODY.encode("cp949"), 40) + b"\r\n")

KO_KSC_SUBJECT = "환불 요청"
KO_KSC_BODY = "환불을 요청합니다.\n주문번호: 5678\n"
def ksc_fixture():
    head = header_block([
        ("From", "\"Lee\" <lee@example.kr>"),
        ("To", "support@example.com"),
        ("Subject", ew_b(KO_KSC_SUBJECT, "ks_c_5601-1987", "cp949")),
        ("Message-ID", "<ko-ksc@example.kr>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="ks_c_5601-1987"'),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ])
    write("ko-ksc5601.eml", crlf(head + "\n") + qp(KO_KSC_BODY.encode("cp949").replace(b"\n", b"\r\n")))

# ---------------------------------------------------------------- Chinese
ZH_GB_SUBJECT = "订单查询"
ZH_GB_BODY = "您好，我的订单还没有到。喆\n"   # 喆 is in GBK but not in GB2312
def gb2312_fixture():
    head = header_block([
        ("From", "wang@example.cn"),
        ("To", "support@example.com"),
        ("Subject", ew_b(ZH_GB_SUBJECT, "gb2312", "gb2312")),
        ("Message-ID", "<zh-gb2312@example.cn>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=gb2312"),
        ("Content-Transfer-Encoding", "base64"),
    ])
    write("zh-gb2312.eml", crlf(head + "\n") + b64(ZH_GB_BODY.encode("gbk")) + b"\r\n")

ZH_BIG5_SUBJECT = "退貨"
ZH_BIG5_BODY = "您好，請問退貨流程。\n"
def big5_fixture():
    head = header_block([
        ("From", "chen@example.tw"),
        ("To", "support@example.com"),
        ("Subject", ew_q(ZH_BIG5_SUBJECT, "big5", "big5")),
        ("Message-ID", "<zh-big5@example.tw>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=big5"),
        ("Content-Transfer-Encoding", "8bit"),
    ])
    write("zh-big5.eml", crlf(head + "\n") + ZH_BIG5_BODY.encode("big5").replace(b"\n", b"\r\n"))

# ---------------------------------------------------------------- Western
W1252_SUBJECT = "Invoice – “March”"
W1252_BODY = "We’re sorry – the “Premium” plan costs €30…\n"
def win1252_fixture():
    head = header_block([
        ("From", "%s <pat@example.com>" % ew_q("Patrick O’Neill", "windows-1252", "cp1252")),
        ("To", "support@example.com"),
        ("Subject", ew_q(W1252_SUBJECT, "windows-1252", "cp1252")),
        ("Message-ID", "<win1252@example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=windows-1252"),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ])
    write("win1252.eml", crlf(head + "\n") + qp(W1252_BODY.encode("cp1252").replace(b"\n", b"\r\n")))

L1_SUBJECT = "Grüße"
L1_BODY = "Grüße aus München – “Danke”\n"   # labelled iso-8859-1 but with cp1252 quotes, as in the wild
def latin1_fixture():
    head = header_block([
        ("From", "=?ISO-8859-1?Q?J=FCrgen_M=FCller?= <juergen@example.de>"),
        ("To", "support@example.com"),
        ("Subject", ew_q(L1_SUBJECT, "ISO-8859-1", "latin-1")),
        ("Message-ID", "<latin1@example.de>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=iso-8859-1"),
        ("Content-Transfer-Encoding", "8bit"),
    ])
    write("latin1.eml", crlf(head + "\n") + L1_BODY.encode("cp1252").replace(b"\n", b"\r\n"))

L2_SUBJECT = "Zażółć gęślą jaźń"
L2_BODY = "Dzień dobry, proszę o fakturę.\n"
def latin2_fixture():
    head = header_block([
        ("From", "ania@example.pl"),
        ("To", "support@example.com"),
        ("Subject", ew_b(L2_SUBJECT, "iso-8859-2", "iso8859_2")),
        ("Message-ID", "<latin2@example.pl>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=ISO-8859-2"),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ])
    write("latin2.eml", crlf(head + "\n") + qp(L2_BODY.encode("iso8859_2").replace(b"\n", b"\r\n")))

L15_SUBJECT = "Prix : 25 €"
L15_BODY = "Le prix est de 25 €, chef-d’œuvre de Šárka.\n".replace("’", "'")
def latin15_fixture():
    head = header_block([
        ("From", "marie@example.fr"),
        ("To", "support@example.com"),
        ("Subject", ew_q(L15_SUBJECT, "ISO-8859-15", "iso8859_15")),
        ("Message-ID", "<latin15@example.fr>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=iso-8859-15"),
        ("Content-Transfer-Encoding", "8bit"),
    ])
    write("latin15.eml", crlf(head + "\n") + L15_BODY.encode("iso8859_15").replace(b"\n", b"\r\n"))

# ---------------------------------------------------------------- quoted-printable details
def qp_fixture():
    # Hand-written QP: soft breaks, =3D, lower-case hex, trailing transport whitespace.
    body = ("Hello, this line is long enough that it gets a soft line br=\n"
            "eak in the middle.\n"
            "Equals: 1+1=3D2, caf=c3=a9 and na=C3=AFve.   \n"
            "A literal = sign that starts no escape =ZZ stays.\n"
            "Last line=\n")
    head = header_block([
        ("From", "qp@example.com"),
        ("To", "support@example.com"),
        ("Subject", "=?utf-8?q?Quoted_printable_=E2=9C=93?="),
        ("Message-ID", "<qp@example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "Quoted-Printable"),
    ])
    write("qp-softbreaks.eml", crlf(head + "\n" + body))

# ---------------------------------------------------------------- nested multipart
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(0, 200))
PDF = b"%PDF-1.4\n% fixture\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
NESTED_TEXT = "Hi team,\n\nThe invoice is attached and the logo is inline.\n\nThanks,\nJane\n"
NESTED_HTML = ('<html><head><style>p { color: red; }</style></head><body>'
               '<p>Hi team,</p><p>The invoice is attached and the logo is <b>inline</b>.</p>'
               '<img src="cid:logo123@example.com" alt="logo"><p>Thanks,<br>Jane</p></body></html>')
def nested_fixture():
    outer, alt, rel = "----=_Part_1", "----=_Part_1_alt", "----=_Part_1_alt_rel"
    fname = "請求書 2024年3月.pdf"
    enc = "".join("%%%02X" % b if (b >= 0x80 or chr(b) in " %'*;()<>@,/:\\\"[]?=") else chr(b) for b in fname.encode("utf-8"))
    half = len(enc) // 2
    while enc[half - 1] == "%" or enc[half - 2] == "%":
        half += 1
    head = header_block([
        ("From", '"Doe, Jane (Sales)" <Jane.Doe@Example.com>'),
        ("To", "Support <support@example.com>, undisclosed-recipients:;"),
        ("Cc", "Bob <bob@example.org>, carol@example.org (Carol C.)"),
        ("Subject", "Invoice and logo"),
        ("Date", "Wed, 6 Mar 2024 09:30:00 -0500 (EST)"),
        ("Message-ID", "<nested-1@example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/mixed;\n boundary="%s"' % outer),
    ])
    parts = [
        "This is a multi-part message in MIME format.\n",
        "--%s\n" % outer,
        'Content-Type: multipart/alternative; boundary="%s"\n\n' % alt,
        "--%s\n" % alt,
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
        quopri.encodestring(NESTED_TEXT.encode()).decode(),
        "--%s\n" % alt,
        'Content-Type: multipart/related; boundary="%s"; type="text/html"\n\n' % rel,
        "--%s\n" % rel,
        "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n",
        b64(NESTED_HTML.encode()).decode().replace("\r\n", "\n") + "\n",
        "--%s\n" % rel,
        # Outlook style: no Content-Disposition, only the Content-ID the HTML refers to.
        'Content-Type: image/png; name="image001.png"\nContent-Transfer-Encoding: base64\nContent-ID: <logo123@example.com>\n\n',
        b64(PNG).decode().replace("\r\n", "\n") + "\n",
        "--%s--\n" % rel,
        "--%s--  \n" % alt,
        "--%s\n" % outer,
        "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n",
        "Content-Disposition: attachment;\n filename*0*=UTF-8''%s;\n filename*1*=%s\n\n" % (enc[:half], enc[half:]),
        b64(PDF).decode().replace("\r\n", "\n") + "\n",
        "--%s\n" % outer,
        'Content-Type: image/jpeg\nContent-Disposition: attachment; filename="../../etc/photo.jpg"\nContent-Transfer-Encoding: base64\n\n',
        # Base64 without padding and with a stray space: must still decode.
        base64.b64encode(b"\xff\xd8\xff\xe0JPEGDATA").decode().rstrip("=")[:8] + " " + base64.b64encode(b"\xff\xd8\xff\xe0JPEGDATA").decode().rstrip("=")[8:] + "\n",
        "--%s--\n" % outer,
        "This epilogue must not appear anywhere.\n",
    ]
    write("nested.eml", crlf(head + "\n" + "".join(parts)))

# ---------------------------------------------------------------- html only
HTML_ONLY = ('<!DOCTYPE html><html><head><title>Ignored title</title><style type="text/css">body{font:12px}</style>'
             '<script>alert("x")</script></head><body>'
             '<div>Hello&nbsp;there,</div><div><br></div>'
             '<p>Your order &amp; invoice &#8211; ready &#x1F600;</p>'
             '<ul><li>Item  one</li><li>Item&nbsp;two</li></ul>'
             '<!-- a comment -->'
             '<div>Price: 5 &lt; 6 &gt; 4 &quot;ok&quot; &copy; 2024<br/>Line two</div>'
             '</body></html>')
def html_only_fixture():
    head = header_block([
        ("From", "News Person <person@example.net>"),
        ("To", "support@example.com"),
        ("Subject", "HTML only"),
        ("Message-ID", "<html-only@example.net>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/html; charset=UTF-8"),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ])
    write("html-only.eml", crlf(head + "\n") + qp(HTML_ONLY.encode()))

# ---------------------------------------------------------------- RFC 2231 filenames in Japanese
def rfc2231_fixture():
    name1 = "見積書.xlsx"
    p1 = "".join("%%%02X" % b for b in name1.encode("utf-8"))
    name2 = "納品書_最終版.pdf"
    sj = name2.encode("shift_jis")
    enc2 = "".join("%%%02X" % b if b >= 0x80 else chr(b) for b in sj)
    cut = 12
    while enc2[cut - 1] == "%" or enc2[cut - 2] == "%":
        cut += 1  # never split an escape between sections
    name3 = "写真.jpg"
    head = header_block([
        ("From", "tanaka@example.jp"),
        ("To", "support@example.com"),
        ("Subject", "=?UTF-8?B?%s?=" % base64.b64encode("添付ファイル".encode()).decode()),
        ("Message-ID", "<rfc2231@example.jp>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/mixed; boundary="b2231"'),
    ])
    body = ("--b2231\nContent-Type: text/plain; charset=utf-8\n\nファイルを送ります。\n"
            "--b2231\nContent-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\n"
            "Content-Disposition: attachment; filename*=UTF-8''%s\nContent-Transfer-Encoding: base64\n\nUEsDBA==\n"
            "--b2231\nContent-Type: application/pdf\n"
            "Content-Disposition: attachment;\n filename*0*=shift_jis'ja'%s;\n filename*1*=%s\nContent-Transfer-Encoding: base64\n\nJVBERg==\n"
            "--b2231\nContent-Type: image/jpeg; name=\"%s\"\n"
            "Content-Disposition: attachment; filename=\"%s\"\nContent-Transfer-Encoding: base64\n\n/9j/4A==\n"
            "--b2231--\n") % (p1, enc2[:cut], enc2[cut:], ew_b(name3, "ISO-2022-JP", "iso2022_jp"), ew_b(name3, "ISO-2022-JP", "iso2022_jp"))
    write("rfc2231-ja.eml", head.encode() .replace(b"\n", b"\r\n") + b"\r\n" + body.encode("utf-8").replace(b"\n", b"\r\n"))

# ---------------------------------------------------------------- replies
def reply(name, subject, body, charset="utf-8", extra=()):
    head = header_block([
        ("From", "Customer <customer@example.org>"),
        ("To", "support@example.com"),
        ("Subject", subject),
        ("Message-ID", "<%s@example.org>" % name),
        ("In-Reply-To", "<orig-%s@example.com>" % name),
        ("References", "<root-%s@example.com>\n <orig-%s@example.com>" % (name, name)),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=%s" % charset),
        ("Content-Transfer-Encoding", "8bit"),
    ] + list(extra))
    write(name + ".eml", (head + "\n" + body).replace("\n", "\r\n").encode(charset))

REPLY_GMAIL_EN = ("Yes, please send a replacement.\n\nThanks!\n\n"
                  "On Tue, Mar 5, 2024 at 2:15 PM Support Team <\nsupport@example.com> wrote:\n\n"
                  "> Hello,\n>\n> Would you like a refund or a replacement?\n>\n> Support\n")
REPLY_OUTLOOK_EN = ("The serial number is SN-4471.\n\nRegards,\nMax\n\n"
                    "________________________________\n"
                    "From: Support Team <support@example.com>\n"
                    "Sent: Tuesday, March 5, 2024 2:15 PM\n"
                    "To: Max Mustermann <max@example.org>\n"
                    "Subject: RE: Broken device\n\n"
                    "Hello Max,\nCould you send us the serial number?\n")
REPLY_GMAIL_KO = ("네, 교환으로 부탁드립니다.\n\n"
                  "2024년 3월 5일 (화) 오후 2:15, 고객지원 <support@example.com>님이 작성:\n\n"
                  "> 안녕하세요.\n> 환불과 교환 중 어느 쪽을 원하시나요?\n")
REPLY_OUTLOOK_KO = ("사진을 첨부했습니다.\n\n"
                    "-----원본 메시지-----\n"
                    "보낸 사람: \"고객지원\" <support@example.com>\n"
                    "받는 사람: <customer@example.org>\n"
                    "보낸 날짜: 2024-03-05 (화) 14:15:00\n"
                    "제목: 파손 문의\n\n"
                    "사진을 보내주시겠어요?\n")
REPLY_GMAIL_JA = ("交換でお願いします。\n\n"
                  "2024年3月5日(火) 14:15 サポート <support@example.com>:\n\n"
                  "> お問い合わせありがとうございます。\n> 返金と交換のどちらをご希望ですか？\n")
REPLY_OUTLOOK_JA = ("写真を添付しました。\nよろしくお願いいたします。\n\n"
                    "-----Original Message-----\n"
                    "From: サポート <support@example.com>\n"
                    "Sent: Tuesday, March 5, 2024 2:15 PM\n"
                    "To: customer@example.org\n"
                    "Subject: 破損について\n\n"
                    "写真を送っていただけますか？\n")
REPLY_THUNDERBIRD_JA = ("承知しました。\n\n"
                        "2024/03/05 14:15 に サポート さんは書きました:\n"
                        "> 明日発送いたします。\n")
def replies():
    reply("reply-gmail-en", "Re: Broken device", REPLY_GMAIL_EN)
    reply("reply-outlook-en", "RE: Broken device", REPLY_OUTLOOK_EN)
    reply("reply-gmail-ko", "=?UTF-8?B?%s?=" % base64.b64encode("Re: 파손 문의".encode()).decode(), REPLY_GMAIL_KO)
    reply("reply-outlook-ko", "RE: =?ks_c_5601-1987?B?%s?=" % base64.b64encode("파손 문의".encode("cp949")).decode(),
          REPLY_OUTLOOK_KO, charset="cp949")
    reply("reply-gmail-ja", "Re: =?ISO-2022-JP?B?%s?=" % base64.b64encode("破損について".encode("iso2022_jp")).decode(), REPLY_GMAIL_JA)
    reply("reply-outlook-ja", "RE: =?iso-2022-jp?B?%s?=" % base64.b64encode("破損について".encode("iso2022_jp")).decode(), REPLY_OUTLOOK_JA)
    reply("reply-thunderbird-ja", "Re: test", REPLY_THUNDERBIRD_JA)
    # The Korean Outlook reply is labelled the way Outlook labels it.
    p = os.path.join(HERE, "reply-outlook-ko.eml")
    data = open(p, "rb").read().replace(b"charset=cp949", b"charset=ks_c_5601-1987")
    open(p, "wb").write(data)

# ---------------------------------------------------------------- noise
def noise():
    write("auto-reply.eml", crlf(header_block([
        ("Return-Path", "<>"),
        ("From", "Jane Doe <jane@example.org>"),
        ("To", "support@example.com"),
        ("Subject", "Out of Office: Broken device"),
        ("Auto-Submitted", "auto-replied; owner-email=\"jane@example.org\""),
        ("Message-ID", "<ooo-1@example.org>"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ]) + "\nI am out of the office until Monday.\n"))
    write("ooo-exchange.eml", crlf(header_block([
        ("From", "Max <max@example.org>"),
        ("To", "support@example.com"),
        ("Subject", "Automatic reply: Broken device"),
        ("X-Auto-Response-Suppress", "All"),
        ("X-MS-Exchange-Inbox-Rules-Loop", "max@example.org"),
        ("Message-ID", "<ooo-2@example.org>"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ]) + "\nI am away.\n"))
    write("x-autoreply.eml", crlf(header_block([
        ("From", "shop@example.org"),
        ("To", "support@example.com"),
        ("Subject", "We got your mail"),
        ("X-Autoreply", "yes"),
        ("Message-ID", "<ack-3@example.org>"),
    ]) + "\nThanks, we will answer soon.\n"))
    write("bulk-list.eml", crlf(header_block([
        ("From", "Weekly News <news@lists.example.net>"),
        ("To", "support@example.com"),
        ("Subject", "[news] Issue 42"),
        ("List-Id", "Example News <news.lists.example.net>"),
        ("List-Unsubscribe", "<mailto:leave@lists.example.net>"),
        ("Precedence", "list"),
        ("Message-ID", "<news-42@lists.example.net>"),
    ]) + "\nThis week in news.\n"))
    write("bulk-precedence.eml", crlf(header_block([
        ("From", "promo@example.net"),
        ("To", "support@example.com"),
        ("Subject", "Sale"),
        ("Precedence", "bulk"),
        ("Message-ID", "<promo-1@example.net>"),
    ]) + "\nBuy now.\n"))
    dsn_head = header_block([
        ("Return-Path", "<>"),
        ("From", "MAILER-DAEMON@mx.example.com (Mail Delivery System)"),
        ("To", "support@example.com"),
        ("Subject", "Undelivered Mail Returned to Sender"),
        ("Auto-Submitted", "auto-replied"),
        ("Message-ID", "<20240305141600.ABC123@mx.example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/report; report-type=delivery-status;\n boundary="DSN.boundary/mx"'),
    ])
    dsn_body = ("This is a MIME-encapsulated message.\n\n"
                "--DSN.boundary/mx\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
                "This is the mail system at host mx.example.com.\n\nI'm sorry to have to inform you that your message could not\n"
                "be delivered to one or more recipients.\n\n<nobody@example.org>: host mx.example.org said: 550 5.1.1\n    User unknown\n\n"
                "--DSN.boundary/mx\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
                "Reporting-MTA: dns; mx.example.com\nX-Postfix-Queue-ID: ABC123\nArrival-Date: Tue,  5 Mar 2024 14:15:59 +0000 (UTC)\n\n"
                "Final-Recipient: rfc822; Nobody@Example.org\nOriginal-Recipient: rfc822;nobody@example.org\nAction: failed\n"
                "Status: 5.1.1\nRemote-MTA: dns; mx.example.org\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: User unknown\n\n"
                "--DSN.boundary/mx\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\n\n"
                "From: Support <support@example.com>\nTo: nobody@example.org\nSubject: Re: Your order\n"
                "Message-ID: <sb.conv_01hxyz.abc.def@example.com>\n\nHello!\n\n"
                "--DSN.boundary/mx--\n")
    write("dsn-bounce.eml", crlf(dsn_head + "\n" + dsn_body))

# ---------------------------------------------------------------- winmail.dat and calendar
TNEF = bytes([0x78, 0x9F, 0x3E, 0x22]) + bytes(range(256)) * 2
ICS = ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Example//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:evt-1@example.org\n"
       "DTSTART:20240310T100000Z\nDTEND:20240310T110000Z\nSUMMARY:Call about the order\nEND:VEVENT\nEND:VCALENDAR\n").replace("\n", "\r\n")
def files():
    head = header_block([
        ("From", "Outlook User <user@example.org>"),
        ("To", "support@example.com"),
        ("Subject", "Attachments in winmail"),
        ("Message-ID", "<tnef@example.org>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/mixed; boundary="tnef-b"'),
    ])
    body = ("--tnef-b\nContent-Type: text/plain; charset=us-ascii\n\nSee attached.\n"
            "--tnef-b\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\n"
            + b64(TNEF).decode().replace("\r\n", "\n") + "\n--tnef-b--\n")
    write("winmail.eml", crlf(head + "\n" + body))
    head = header_block([
        ("From", "organizer@example.org"),
        ("To", "support@example.com"),
        ("Subject", "Invitation: Call about the order"),
        ("Message-ID", "<cal@example.org>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/mixed; boundary="cal-outer"'),
    ])
    body = ("--cal-outer\nContent-Type: multipart/alternative; boundary=\"cal-alt\"\n\n"
            "--cal-alt\nContent-Type: text/plain; charset=utf-8\n\nYou are invited: Call about the order\n"
            "--cal-alt\nContent-Type: text/html; charset=utf-8\n\n<p>You are invited: <b>Call about the order</b></p>\n"
            "--cal-alt\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\nContent-Transfer-Encoding: 7bit\n\n"
            + ICS.replace("\r\n", "\n") +
            "--cal-alt--\n"
            "--cal-outer\nContent-Type: application/ics; name=\"invite.ics\"\nContent-Disposition: attachment; filename=\"invite.ics\"\n"
            "Content-Transfer-Encoding: base64\n\n" + b64(ICS.encode()).decode().replace("\r\n", "\n") + "\n--cal-outer--\n")
    write("calendar.eml", crlf(head + "\n" + body))

# ---------------------------------------------------------------- malformed (LF only, on purpose)
def malformed():
    data = (b"From: Broken Sender <broken@example.org>\n"
            b"To: support@example.com\n"
            b"This line has no colon and must be skipped\n"
            b"Subject: =?utf-8?B?QnJva2VuIG1haWwg4pyT?=\n"
            b"Message-ID: <malformed@example.org>\n"
            b"Content-Type: multipart/mixed; boundary=\"mal\"\n"
            b"\n"
            b"--mal\n"
            b"Content-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: base64\n"
            b"\n"
            b"SGVsbG8g*d29y!bGQ\n"   # junk characters and no padding: "Hello world"
            b"--mal\n"
            b"Content-Type: application/octet-stream; name=\"data.bin\"\n"
            b"Content-Transfer-Encoding: x-uuencode\n"
            b"\n"
            b"begin 644 data.bin\x00\x01\x02\n"
            b"--mal\n"
            b"Content-Type: text/plain; charset=utf-8\n"
            b"\n"
            b"Second text part without a final boundary \xe2\x9c\x93\n")
    write("malformed.eml", data)

if __name__ == "__main__":
    iso2022jp_fixture(); sjis_fixture(); eucjp_fixture(); euckr_fixture(); ksc_fixture(); gb2312_fixture(); big5_fixture()
    win1252_fixture(); latin1_fixture(); latin2_fixture(); latin15_fixture(); qp_fixture(); nested_fixture()
    html_only_fixture(); rfc2231_fixture(); replies(); noise(); files(); malformed()
