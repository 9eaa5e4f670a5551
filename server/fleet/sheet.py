"""The enrolment sheet: one A4 page (PDF, Vietnamese first) for the technician at a station.

It carries the one-time code twice: as a QR code the station's own scanner reads
(``sohoa-agent enrol --scan``, ``agent/uplink/enrol.py``), and in print for
``sohoa-agent enrol CODE``. It also prints the archive key's fingerprint, which the agent
shows after enrolling, so a person can compare the two. The payload of the QR code is the
code itself (``protocol.enrolment.EnrolCode.text``), nothing else.

The sheet is a secret until used or expired: whoever holds it can enrol one station.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from protocol.enrolment import EnrolCode

FONTS = (
    Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
)
MONO = (
    Path("/usr/share/fonts/truetype/noto/NotoSansMono-Regular.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
)
UTC7 = 7 * 3600


def _font(size: int, mono: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in MONO if mono else FONTS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default()


def _local(ts: float) -> str:
    """Vietnam time (UTC+7, no daylight saving), as people there read it."""
    return time.strftime("%H:%M ngày %d/%m/%Y", time.gmtime(ts + UTC7)) + " (giờ Việt Nam)"


def render(code: EnrolCode, commune: str, expires_at: float, dpi: int = 150) -> Image.Image:
    import qrcode

    width, height = int(210 / 25.4 * dpi), int(297 / 25.4 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    margin = dpi // 2
    y = margin

    def line(text: str, size: int, mono: bool = False, centre: bool = False) -> None:
        nonlocal y
        font = _font(size, mono)
        x = (width - draw.textlength(text, font=font)) / 2 if centre else margin
        draw.text((x, y), text, fill=0, font=font)
        y += int(size * 1.45)

    line("PHIẾU ĐĂNG KÝ TRẠM QUÉT — sohoa", dpi // 5, centre=True)
    line("Station enrolment sheet", dpi // 8, centre=True)
    y += dpi // 8
    line(f"Trạm / station: {code.device_id}", dpi // 7)
    line(f"Đơn vị / commune: {commune}", dpi // 7)
    line(f"Hết hạn / expires: {_local(expires_at)}", dpi // 9)
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=4)
    qr.add_data(code.text())
    qr.make(fit=True)
    modules = qr.get_matrix()
    box = max(4, int(width * 0.5) // len(modules))
    img = qr.make_image(fill_color="black", back_color="white").get_image()
    img = img.convert("L").resize(
        (len(modules) * box, len(modules) * box), Image.Resampling.NEAREST
    )
    y += dpi // 8
    page.paste(img, ((width - img.width) // 2, y))
    y += img.height + dpi // 8
    steps = [
        "Cách dùng (chỉ dùng MỘT lần):",
        "1. Đặt phiếu này vào máy quét của trạm, chạy:  sohoa-agent enrol --scan",
        "2. hoặc gõ trên trạm:  sohoa-agent enrol <mã bên dưới>",
        "Sau khi đăng ký, trạm hiện dấu vân tay khóa của Lưu trữ: so với dòng cuối.",
        "Giữ kín phiếu này cho đến khi dùng xong; hủy phiếu sau khi dùng.",
        "Use once: put it in the station's scanner and run sohoa-agent enrol --scan,",
        "or type the code below: sohoa-agent enrol <code>.",
    ]
    for text in steps:
        line(text, dpi // 10)
    y += dpi // 10
    line("Mã đăng ký / enrolment code:", dpi // 10)
    text = code.text()
    for start in range(0, len(text), 48):
        line(text[start : start + 48], dpi // 9, mono=True)
    y += dpi // 10
    fp = code.key_fingerprint
    pretty = " ".join(fp[i : i + 4] for i in range(0, len(fp), 4))
    line(f"Khóa Lưu trữ / archive key: {pretty}", dpi // 11, mono=True)
    return page


def write_pdf(code: EnrolCode, commune: str, expires_at: float, path: Path) -> Path:
    page = render(code, commune, expires_at).convert("RGB")
    buf = io.BytesIO()
    page.save(buf, "PDF", resolution=150)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(buf.getvalue())
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
