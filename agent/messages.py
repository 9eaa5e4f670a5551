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
    "no_archive_key": (
        "Trạm chưa có khóa của Lưu trữ (chưa đăng ký): không nhận biên nhận nào, không xóa "
        "trang nào. Đăng ký trạm: sohoa-agent enrol MÃ.",
        "No archive key is pinned on this station (not enrolled): receipts are ignored and "
        "nothing is deleted. Enrol it: sohoa-agent enrol CODE.",
    ),
    "broker_untrusted": (
        "Không xác thực được máy chủ {broker}: chứng chỉ không do CA tin cậy cấp. Không gửi "
        "gì. Cần tệp CA của Lưu trữ tỉnh: sohoa-agent enrol MÃ --ca TỆP.",
        "Cannot authenticate the server {broker}: its certificate is not from a trusted CA. "
        "Nothing was sent. Get the archive's CA file: sohoa-agent enrol CODE --ca FILE.",
    ),
    "enrol_done": (
        "Đã đăng ký trạm “{device}” với Lưu trữ. Khóa Lưu trữ: {fingerprint} — so với dòng "
        "cuối của phiếu đăng ký.",
        "Station “{device}” enrolled with the archive. Archive key: {fingerprint} — compare "
        "with the last line of the enrolment sheet.",
    ),
    "enrol_no_sheet": (
        "Không đọc được phiếu đăng ký trên trang vừa quét. Đặt phiếu thẳng, mặt in xuống "
        "(theo máy), rồi quét lại.",
        "No enrolment sheet found on the scanned page. Put the sheet in straight and scan again.",
    ),
    "enrol_bad_code": (
        "Mã đăng ký không đúng: {detail}. Gõ lại mã, hoặc quét lại phiếu.",
        "The enrolment code is not valid: {detail}. Type it again, or scan the sheet again.",
    ),
    "enrol_plain_refused": (
        "Từ chối gửi mã đăng ký qua kết nối không mã hóa tới {host}. Xin phiếu mới (mqtts://).",
        "Refusing to send the code unencrypted to {host}. Ask for a new sheet (mqtts://).",
    ),
    "enrol_already": (
        "Trạm này đã đăng ký. Muốn đăng ký lại (thay máy, mã mới) thì thêm --force.",
        "This station is already enrolled. To enrol again (new code) add --force.",
    ),
    "enrol_code_used": (
        "Mã đăng ký này đã được dùng cho một trạm khác. Xin Lưu trữ tỉnh phiếu mới.",
        "This code was already used by another station. Ask the archive for a new sheet.",
    ),
    "enrol_code_expired": (
        "Mã đăng ký đã hết hạn. Xin Lưu trữ tỉnh phiếu mới.",
        "This enrolment code has expired. Ask the archive for a new sheet.",
    ),
    "enrol_bad_code_server": (
        "Lưu trữ không nhận mã này (đã thay bằng phiếu mới, hoặc trạm đã bị thu hồi).",
        "The archive does not accept this code (replaced by a new sheet, or revoked).",
    ),
    "enrol_refused_by_broker": (
        "Máy chủ không nhận mã đăng ký (đã dùng, hết hạn hoặc sai). Xin phiếu mới.",
        "The broker does not accept this code (used, expired or wrong). Ask for a new sheet.",
    ),
    "enrol_no_answer": (
        "Lưu trữ chưa trả lời. Kiểm tra đường truyền rồi thử lại; mã vẫn còn dùng được.",
        "The archive did not answer. Check the link and try again; the code is still good.",
    ),
    "enrol_wrong_archive": (
        "Câu trả lời không đến từ Lưu trữ ghi trên phiếu. Không đăng ký. Gọi cán bộ kỹ thuật.",
        "The answer did not come from the archive named on the sheet. Not enrolled. Call "
        "the technician.",
    ),
    "enrol_bad_reply": (
        "Câu trả lời đăng ký bị hỏng hoặc giả mạo ({detail}). Không đăng ký.",
        "The enrolment answer is damaged or forged ({detail}). Not enrolled.",
    ),
    "enrol_broker": (
        "Lưu trữ chưa sẵn sàng. Thử lại sau ít phút; mã vẫn còn dùng được.",
        "The archive is not ready. Try again in a few minutes; the code is still good.",
    ),
    "enrol_bad_signature": (
        "Yêu cầu đăng ký không hợp lệ (chữ ký). Gọi cán bộ kỹ thuật.",
        "The enrolment request was refused (signature). Call the technician.",
    ),
    # Start-up checks (agent.preflight): the service refuses to start, exit 78.
    "startup_ocr_missing": (
        "Không khởi động được: thiếu tesseract hoặc dữ liệu tiếng Việt của nó. "
        "Cán bộ kỹ thuật cài bằng: {hint}",
        "Cannot start: tesseract or its Vietnamese data is missing. "
        "The technician installs it with: {hint}",
    ),
    "startup_sane_missing": (
        "Không khởi động được: thiếu thư viện máy quét SANE. Cán bộ kỹ thuật cài bằng: {hint}",
        "Cannot start: the SANE scanner library is missing. "
        "The technician installs it with: {hint}",
    ),
    "startup_broker_invalid": (
        "Không khởi động được: địa chỉ máy chủ tin nhắn (MQTT) sai: {detail}. Sửa {hint}.",
        "Cannot start: the message broker (MQTT) address is wrong: {detail}. Fix {hint}.",
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
    "export_not_enrolled": (
        "Trạm chưa đăng ký nên không ký được gói USB; Lưu trữ sẽ không nhận. Chưa ghi gì. "
        "Đăng ký trạm trước: sohoa-agent enrol MÃ.",
        "This station is not enrolled, so it cannot sign a USB bundle and the archive would "
        "refuse it. Nothing was written. Enrol it first: sohoa-agent enrol CODE.",
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
    # Re-scan requests from the archive (server review queue → Command → agent.outbox.rescan).
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
