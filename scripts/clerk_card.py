#!/usr/bin/env python3
"""The one-page A4 card for the commune clerk (Vietnamese): load, press, what the lights and
beeps mean, what to do when it stops. Print it and keep it beside the scanner.

    .venv/bin/python scripts/clerk_card.py [OUT.pdf]      # default: the-huong-dan-tram-quet.pdf

The lights-and-beeps table comes from agent/feedback.py (STATE_SIGNALS, OPERATOR_TEXT), the
same data the button box is driven by, so the card cannot drift from the box. Drawn with
Pillow (as the cover sheets are) at 200 dpi in a font with Vietnamese glyphs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import __version__  # noqa: E402
from agent.buttons.events import DEFAULT_LONG_S  # noqa: E402
from agent.buttons.feedback import OPERATOR_TEXT, STATE_SIGNALS, AgentState, Signal  # noqa: E402

DPI = 200
A4 = (round(210 / 25.4 * DPI), round(297 / 25.4 * DPI))
MARGIN = round(12 / 25.4 * DPI)
FONTS = Path("/usr/share/fonts/truetype")
REGULAR = [FONTS / "noto/NotoSans-Regular.ttf", FONTS / "dejavu/DejaVuSans.ttf"]
BOLD = [FONTS / "noto/NotoSans-Bold.ttf", FONTS / "dejavu/DejaVuSans-Bold.ttf"]
COLOURS = {"green": (0, 150, 60), "yellow": (230, 170, 0), "red": (210, 30, 30)}
COLOUR_VI = {"green": "xanh", "yellow": "vàng", "red": "đỏ"}
PATTERN_VI = {"on": "sáng", "blink": "nhấp nháy", "fast": "nháy nhanh"}

TITLE = "HƯỚNG DẪN SỬ DỤNG TRẠM QUÉT SỐ HÓA"
SUBTITLE = "Dành cho cán bộ văn phòng Ủy ban nhân dân xã, phường, đặc khu"
LOAD = [
    "Gỡ hết ghim, kẹp giấy; vuốt phẳng góc gấp. Tờ rách, mục hoặc quá mỏng: không cho vào "
    "khay, quét từng tờ trên mặt kính.",
    "Đặt cả tập vào khay nạp giấy theo hình vẽ trên máy quét (mép trên vào trước), không quá "
    "vạch giới hạn của khay.",
    "Nếu dùng tờ bìa phân tách (có mã QR): đặt một tờ trước mỗi văn bản.",
]
PRESS = [
    "Bấm nhanh nút quét: quét một mặt. Giữ nút hơn {long} giây: quét cả hai mặt.",
    "Đèn xanh nhấp nháy là đang quét: không kéo giấy ra. Một tiếng bíp ngắn và đèn xanh sáng "
    "là xong: nạp tập tiếp theo.",
    "Mỗi trang được lưu ngay khi quét; máy tự gửi về Lưu trữ lịch sử tỉnh khi có mạng.",
]
STOPS = [
    "Kẹt giấy, nắp mở hoặc kéo hai tờ (đèn đỏ nháy, ba tiếng bíp dài): gỡ giấy, đặt lại "
    "những tờ CHƯA quét rồi bấm nút. Máy quét tiếp lô đó; trang đã quét không mất.",
    "Đèn đỏ sáng, hai tiếng bíp mỗi phút (ổ đĩa sắp đầy): ngừng quét, báo cán bộ kỹ thuật.",
    "Đèn vàng (mất mạng hoặc đang gửi): vẫn quét bình thường; bản quét tự gửi khi có mạng.",
    "Mất điện: không cần làm gì. Khi có điện, máy tự tiếp tục; tờ đang quét dở thì quét lại "
    "từ tờ đó.",
    "Không rút điện, không tắt máy khi đèn xanh đang nhấp nháy.",
]
CALL = "Cán bộ kỹ thuật: ……………………………………   Điện thoại: ……………………………"


@dataclass
class Pen:
    draw: ImageDraw.ImageDraw
    y: int

    def font(self, pt: float, bold: bool = False) -> ImageFont.FreeTypeFont:
        for path in BOLD if bold else REGULAR:
            if path.exists():
                return ImageFont.truetype(str(path), round(pt / 72 * DPI))
        raise SystemExit("clerk_card: no font with Vietnamese glyphs (apt install fonts-noto-core)")

    def wrap(self, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
        lines, line = [], ""
        for word in text.split():
            candidate = f"{line} {word}".strip()
            if self.draw.textlength(candidate, font=font) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        return [*lines, line] if line else lines

    def text(self, text: str, pt: float, x: int = MARGIN, bold: bool = False,
             width: int | None = None, gap: float = 1.25) -> list[str]:  # fmt: skip
        font = self.font(pt, bold)
        width = width or A4[0] - MARGIN - x
        lines = self.wrap(text, font, width)
        for line in lines:
            self.draw.text((x, self.y), line, fill=(0, 0, 0), font=font)
            self.y += round(pt / 72 * DPI * gap)
        return lines

    def heading(self, text: str) -> list[str]:
        self.y += round(0.12 * DPI)
        lines = self.text(text, 13, bold=True)
        self.y += round(0.03 * DPI)  # a rule touching the descenders garbles the heading
        self.draw.line((MARGIN, self.y, A4[0] - MARGIN, self.y), fill=(0, 0, 0), width=3)
        self.y += round(0.06 * DPI)
        return lines

    def items(self, texts: list[str]) -> list[str]:
        out = []
        for i, text in enumerate(texts, 1):
            start = self.y
            self.draw.text((MARGIN, start), f"{i}.", fill=(0, 0, 0), font=self.font(10.5, True))
            out += self.text(text, 10.5, x=MARGIN + round(0.25 * DPI))
            self.y += round(0.03 * DPI)
        return out


def describe_leds(signal: Signal) -> str:
    if signal.leds is None:
        return "giữ nguyên"
    lit = [f"{COLOUR_VI[c]} {PATTERN_VI[p]}" for c, p in signal.leds.items() if p != "off"]
    return ", ".join(lit) or "tắt"


def describe_beeps(signal: Signal) -> str:
    if not signal.beeps:
        return "—"
    length = "ngắn" if signal.beep_ms <= 250 else "dài"
    text = f"{signal.beeps} tiếng {length}"
    if signal.repeat_s:
        text += f", lặp lại mỗi {round(signal.repeat_s)} giây"
    return text


def draw_lamps(draw: ImageDraw.ImageDraw, signal: Signal, x: int, y: int) -> None:
    r = round(0.05 * DPI)
    for i, colour in enumerate(("green", "yellow", "red")):
        pattern = None if signal.leds is None else signal.leds.get(colour, "off")
        cx = x + i * 3 * r + r
        box = (cx - r, y - r, cx + r, y + r)
        if pattern in ("on", "blink", "fast"):
            draw.ellipse(box, fill=COLOURS[colour], outline=(0, 0, 0), width=2)
        else:
            draw.ellipse(box, fill=(255, 255, 255), outline=(120, 120, 120), width=2)


def lights_table(pen: Pen) -> list[str]:
    out: list[str] = []
    cols = [MARGIN, MARGIN + round(0.55 * DPI), MARGIN + round(2.05 * DPI),
            MARGIN + round(3.55 * DPI)]  # fmt: skip
    head = pen.font(10, True)
    for x, title in zip(cols, ("", "Đèn", "Tiếng bíp", "Ý nghĩa, việc cần làm"), strict=True):
        pen.draw.text((x, pen.y), title, fill=(0, 0, 0), font=head)
    pen.y += round(10 / 72 * DPI * 1.4)
    for state in AgentState:
        signal = STATE_SIGNALS[state]
        top = pen.y
        draw_lamps(pen.draw, signal, cols[0], top + round(0.07 * DPI))
        leds = describe_leds(signal)
        beeps = describe_beeps(signal)
        meaning = OPERATOR_TEXT["vi"][state]
        pen.y = top
        a = pen.text(leds, 9.5, x=cols[1], width=cols[2] - cols[1] - 20, gap=1.2)
        end = pen.y
        pen.y = top
        b = pen.text(beeps, 9.5, x=cols[2], width=cols[3] - cols[2] - 20, gap=1.2)
        end = max(end, pen.y)
        pen.y = top
        c = pen.text(meaning, 9.5, x=cols[3], gap=1.2)
        pen.y = max(end, pen.y) + round(0.05 * DPI)
        pen.draw.line((MARGIN, pen.y - 8, A4[0] - MARGIN, pen.y - 8), fill=(190, 190, 190))
        out += [*a, *b, *c]
    return out


def render() -> tuple[Image.Image, list[str]]:
    """The card and every line of text on it (tests read the lines)."""
    image = Image.new("RGB", A4, "white")
    pen = Pen(ImageDraw.Draw(image), MARGIN)
    lines = pen.text(TITLE, 17, bold=True)
    lines += pen.text(SUBTITLE, 11)
    lines += pen.heading("1. Nạp giấy")
    lines += pen.items(LOAD)
    lines += pen.heading("2. Bấm nút quét")
    long_s = f"{DEFAULT_LONG_S:g}".replace(".", ",")
    lines += pen.items([t.format(long=long_s) for t in PRESS])
    lines += pen.heading("3. Đèn và tiếng bíp")
    lines += lights_table(pen)
    lines += pen.heading("4. Khi máy dừng")
    lines += pen.items(STOPS)
    pen.y += round(0.1 * DPI)
    lines += pen.text(CALL, 11, bold=True)
    if pen.y > A4[1] - MARGIN:
        raise SystemExit(f"clerk_card: the text runs {pen.y - A4[1] + MARGIN} px past one page")
    footer = f"sohoa {__version__} — in từ scripts/clerk_card.py"
    font = pen.font(8)
    pen.draw.text((MARGIN, A4[1] - MARGIN // 2 - 20), footer, fill=(90, 90, 90), font=font)
    return image, [*lines, footer]


def write(out: Path) -> Path:
    image, _ = render()
    image.save(out, "PDF", resolution=DPI, title=TITLE, author="sohoa")
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("the-huong-dan-tram-quet.pdf")
    print(write(target))
