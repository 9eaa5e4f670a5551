"""Operator messages, Vietnamese first, English available.

One line per situation. The CLI prints ``t(key)`` to the operator and logs the English text
with the technical detail. Keys are stable: tests and the feedback table refer to them.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["vi", "en"]

CATALOG: dict[str, tuple[str, str]] = {
    # key: (Vietnamese, English)
    "scan_started": ("Đang quét… ({scanner})", "Scanning… ({scanner})"),
    "scan_continues": (
        "Quét tiếp lô {batch} (đã có {pages} trang) sau lần dừng trước.",
        "Continuing batch {batch} ({pages} page(s) so far) after the last stop.",
    ),
    "scan_page": ("Đã lưu trang {page_no}", "Saved page {page_no}"),
    "scan_done": (
        "Xong: đã lưu {pages} trang vào lô {batch}.",
        "Done: {pages} page(s) saved in batch {batch}.",
    ),
    "scan_no_paper": (
        "Khay nạp giấy trống — hãy đặt giấy vào rồi bấm nút lại.",
        "The feeder is empty — load paper and press the button again.",
    ),
    "scanner_not_found": (
        "Không tìm thấy máy quét “{scanner}”. Kiểm tra cáp USB và nguồn điện của máy quét.",
        "Scanner “{scanner}” not found. Check the scanner's USB cable and power.",
    ),
    "scanner_busy": (
        "Máy quét đang bận (một chương trình khác đang dùng). Chờ một lát rồi thử lại.",
        "The scanner is busy (another program is using it). Wait a moment and try again.",
    ),
    "scanner_jammed": (
        "Kẹt giấy. Đã giữ {pages} trang đã quét. Gỡ giấy kẹt, đặt lại các trang còn lại "
        "rồi bấm nút để quét tiếp.",
        "Paper jam. The {pages} page(s) scanned so far are kept. Clear the jam, reload the "
        "remaining pages and press the button to continue.",
    ),
    "scanner_cover_open": (
        "Nắp máy quét đang mở. Đã giữ {pages} trang. Đóng nắp rồi bấm nút để quét tiếp.",
        "The scanner cover is open. {pages} page(s) kept. Close it and press the button.",
    ),
    "scanner_double_feed": (
        "Máy quét báo kéo 2 tờ cùng lúc. Đã giữ {pages} trang. Đặt lại tờ cuối rồi quét tiếp.",
        "The scanner fed two sheets at once. {pages} page(s) kept. Reload the last sheet.",
    ),
    "scanner_failed": (
        "Máy quét gặp lỗi. Đã giữ {pages} trang đã quét. Tắt/bật máy quét rồi thử lại.",
        "The scanner failed. The {pages} page(s) scanned so far are kept. "
        "Power-cycle the scanner and try again.",
    ),
    "disk_full": (
        "Ổ đĩa sắp đầy — không nhận bản quét mới. Hãy đồng bộ hoặc gọi cán bộ kỹ thuật.",
        "The disk is nearly full — new scans are refused. Sync, or call the technician.",
    ),
    "write_failed": (
        "Không ghi được tệp lên ổ đĩa. Gọi cán bộ kỹ thuật.",
        "A file could not be written to disk. Call the technician.",
    ),
    "outbox_locked": (
        "Dịch vụ sohoa đang chạy — hãy bấm nút trên máy quét thay vì dùng lệnh này.",
        "The sohoa service is running — press the scan button instead of this command.",
    ),
    "import_done": (
        "Đã nhập {pages} trang vào lô {batch}.",
        "Imported {pages} page(s) into batch {batch}.",
    ),
    "import_refused": (
        "Không đọc được tệp “{name}”: {reason}. Các tệp khác vẫn được giữ.",
        "Cannot read “{name}”: {reason}. The other files are kept.",
    ),
    "import_nothing": ("Không có tệp nào nhập được.", "No file could be imported."),
    "config_invalid": (
        "Cấu hình không hợp lệ: {detail}",
        "Invalid configuration: {detail}",
    ),
    "device_not_enrolled": (
        "Máy quét này chưa được đăng ký với kho lưu trữ nên chưa gửi được. Các trang đã quét "
        "vẫn được giữ an toàn trên máy. Gọi cán bộ kỹ thuật để đăng ký thiết bị.",
        "This station is not enrolled with the archive yet, so nothing can be sent. Pages "
        "already scanned are kept safe here. Call the technician to enrol it.",
    ),
    "broker_unreachable": (
        "Không kết nối được máy chủ ({broker}). Dữ liệu vẫn an toàn trên máy, sẽ gửi lại sau.",
        "Cannot reach the server ({broker}). The data is safe here and will be sent later.",
    ),
    "broker_refused": (
        "Máy chủ từ chối đăng nhập của thiết bị “{device}”. Kiểm tra tên và mật khẩu.",
        "The server refused device “{device}”. Check its user name and password.",
    ),
    "sync_timeout": (
        "Chưa gửi xong sau {seconds} giây: còn {pending} trang chờ máy chủ xác nhận. "
        "Dữ liệu vẫn an toàn trên máy.",
        "Not finished after {seconds} s: {pending} page(s) await the server's receipt. "
        "The data is safe here.",
    ),
    "sync_done": (
        "Đã gửi xong: máy chủ đã xác nhận {pages} trang.",
        "Sync complete: the server confirmed {pages} page(s).",
    ),
    "sync_nothing": ("Không có gì cần gửi.", "Nothing to send."),
    "processing": ("Đang xử lý {pending} trang…", "Processing {pending} page(s)…"),
    "ocr_unavailable": (
        "Thiếu phần mềm nhận dạng chữ (tesseract). Gọi cán bộ kỹ thuật.",
        "OCR software (tesseract) is missing. Call the technician.",
    ),
    "interrupted": ("Đã dừng. Dữ liệu đã lưu vẫn an toàn.", "Stopped. Saved data is safe."),
    "coversheet_done": (
        "Đã tạo {count} tờ bìa phân tách: {path}. In ra và đặt trước mỗi văn bản.",
        "Wrote {count} cover sheet(s): {path}. Print them and put one before each document.",
    ),
    "coversheet_invalid": ("Không tạo được tờ bìa: {detail}", "Cannot make cover sheets: {detail}"),
    "internal_error": (
        "Lỗi không mong muốn. Dữ liệu đã lưu vẫn an toàn. Gọi cán bộ kỹ thuật.",
        "Unexpected error. Saved data is safe. Call the technician.",
    ),
    # USB bundles (sohoa-agent export / import-receipts), for communes with no link at all.
    "export_done": (
        "Đã chép {pages} trang ({batches} lô, {mb} MB) ra USB: {path}. Mang USB đến máy chủ "
        "lưu trữ; khi cắm lại vào đây, biên nhận sẽ được đọc. Dữ liệu vẫn giữ trên máy đến "
        "khi có biên nhận.",
        "Copied {pages} page(s) ({batches} batch(es), {mb} MB) to the USB disk: {path}. Take "
        "it to the archive server; plug it back in here to read the receipts. The data stays "
        "on this device until then.",
    ),
    "export_nothing": (
        "Không có lô nào cần chép ra USB.",
        "Nothing to copy to the USB disk.",
    ),
    "export_no_target": (
        "Không thấy ổ USB tại “{path}”. Kiểm tra USB đã được cắm và mở (mount) chưa.",
        "No USB disk at “{path}”. Check that it is plugged in and mounted.",
    ),
    "export_no_space": (
        "USB không đủ chỗ: cần {need_mb} MB, chỉ còn trống {free_mb} MB. Chưa ghi gì. "
        "Hãy dùng USB khác hoặc xóa bớt tệp trên USB.",
        "Not enough room on the USB disk: {need_mb} MB needed, {free_mb} MB free. Nothing "
        "was written. Use another disk or free some space on it.",
    ),
    "export_write_failed": (
        "Ghi ra USB bị lỗi ({detail}). Bản chép dở đã được bỏ; dữ liệu trên máy vẫn an "
        "toàn. Thử lại hoặc dùng USB khác.",
        "Writing to the USB disk failed ({detail}). The partial copy was removed; the data "
        "on this device is safe. Try again or use another disk.",
    ),
    "export_secret_skipped": (
        "{batches} lô có độ mật không được chép ra USB (quy định bảo vệ bí mật nhà nước).",
        "{batches} secret (mật) batch(es) were not copied: state-secret records never "
        "leave this device.",
    ),
    "export_quarantined": (
        "Lô {batch} bị cách ly: tệp trên máy đã thay đổi ({detail}). Gọi cán bộ kỹ thuật.",
        "Batch {batch} quarantined: a local file changed ({detail}). Call the technician.",
    ),
    "receipts_applied": (
        "Đã đọc biên nhận: máy chủ xác nhận {parts} phần; {batches} lô ({pages} trang) đã "
        "được lưu trữ xong và đã giải phóng trên máy.",
        "Receipts read: the server confirmed {parts} part(s); {batches} batch(es) "
        "({pages} page(s)) are archived and released on this device.",
    ),
    "receipts_none": (
        "Không tìm thấy biên nhận nào của thiết bị này tại “{path}”.",
        "No receipts for this device at “{path}”.",
    ),
    "receipts_refused": (
        "Bỏ qua biên nhận “{name}”: {reason}.",
        "Ignored receipt “{name}”: {reason}.",
    ),
    "receipts_server_refused": (
        "Máy chủ đã từ chối {count} tệp trong gói USB; các trang liên quan vẫn giữ trên máy "
        "và sẽ được chép lại ở lần chép sau (sohoa-agent export).",
        "The server refused {count} file(s) of the USB bundle; the pages concerned stay on "
        "this device and go again with the next export (sohoa-agent export).",
    ),
    # Re-scan requests from the archive (server review queue → Command → agent.rescan).
    "rescan_requested": (
        "Cần quét lại: lô {batch}, trang {page}, lý do: {note} "
        "(khi xong: sohoa-agent rescan-done {page_id})",
        "Re-scan needed: batch {batch}, page {page}, reason: {note} "
        "(when done: sohoa-agent rescan-done {page_id})",
    ),
    "rescan_none": ("Không có yêu cầu quét lại nào.", "No re-scan request."),
    "rescan_cleared": (
        "Đã xóa yêu cầu quét lại: lô {batch}, trang {page}.",
        "Re-scan request cleared: batch {batch}, page {page}.",
    ),
    "rescan_not_found": (
        "Không có yêu cầu quét lại nào cho trang “{key}”.",
        "No re-scan request for page “{key}”.",
    ),
    "rescan_ambiguous": (
        "“{key}” khớp với {count} trang; hãy gõ thêm ký tự của mã trang.",
        "“{key}” matches {count} pages; type more of the page id.",
    ),
    "receipts_pending": (
        "Còn {pages} trang chờ máy chủ xác nhận.",
        "{pages} page(s) still await the server's receipt.",
    ),
}


def t(key: str, lang: Lang = "vi", /, **params: object) -> str:
    vi, en = CATALOG.get(key, (key, key))
    text = vi if lang == "vi" else en
    try:
        return text.format(**params)
    except (KeyError, IndexError):
        return text
