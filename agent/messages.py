"""Operator messages, Vietnamese first, English available.

One line per situation. The CLI prints ``t(key)`` to the operator and logs the English text
with the technical detail. Keys are stable: tests and the feedback table refer to them.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["vi", "en"]

CATALOG: dict[str, tuple[str, str]] = {
    # key: (Vietnamese, English)
    "scan_started": ("Đang quét…", "Scanning…"),
    "scan_continues": (
        "Quét tiếp lô {batch} (đã có {pages} trang) sau lần dừng trước.",
        "Continuing batch {batch} ({pages} page(s) so far) after the last stop.",
    ),
    "scan_page": ("Đã lưu trang {page_no}", "Saved page {page_no}"),
    "fonds_chosen": (
        "Các lô tiếp theo thuộc phông {fonds}.",
        "The next batches are for fonds {fonds}.",
    ),
    "scan_done": (
        "Xong: đã lưu {pages} trang vào lô {batch}.",
        "Done: {pages} page(s) saved in batch {batch}.",
    ),
    "scan_no_paper": (
        "Khay nạp giấy trống — hãy đặt giấy vào rồi bấm nút lại.",
        "The feeder is empty — load paper and press the button again.",
    ),
    "scanner_not_found": (
        "Không tìm thấy máy quét. Kiểm tra cáp USB và nguồn điện của máy quét.",
        "Scanner not found. Check the scanner's USB cable and power.",
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
    "scanner_stalled": (
        "Máy quét ngừng gửi dữ liệu giữa trang. Các trang đã quét được giữ nguyên. Trạm quét "
        "sẽ tự khởi động lại: tắt/bật máy quét, đặt lại tờ đang quét rồi bấm nút.",
        "The scanner stopped sending data mid-page. The pages already scanned are kept. The "
        "station restarts itself: power-cycle the scanner, reload the sheet being scanned "
        "and press the button.",
    ),
    "disk_full": (
        "Ổ đĩa sắp đầy — không nhận bản quét mới. Hãy đồng bộ hoặc gọi cán bộ kỹ thuật.",
        "The disk is nearly full — new scans are refused. Sync, or call the technician.",
    ),
    "disk_low": (
        "Ổ đĩa chỉ còn đủ cho khoảng {days} ngày quét. Vẫn quét được; hãy để máy gửi bản quét "
        "lên lưu trữ tỉnh (cần mạng), xuất ra USB (sohoa-agent export), hoặc gọi cán bộ kỹ thuật.",
        "The disk holds only about {days} more days of scanning. You can still scan; let the "
        "station send its scans (needs the link), export them to USB (sohoa-agent export), or "
        "call the technician.",
    ),
    "write_failed": (
        "Không ghi được tệp lên ổ đĩa. Gọi cán bộ kỹ thuật.",
        "A file could not be written to disk. Call the technician.",
    ),
    "outbox_locked": (
        "Dịch vụ sohoa đang chạy — hãy bấm nút trên máy quét thay vì dùng lệnh này.",
        "The sohoa service is running — press the scan button instead of this command.",
    ),
    "outbox_newer": (
        "Dữ liệu trên máy do phiên bản sohoa mới hơn ghi. Gọi cán bộ kỹ thuật để cài lại "
        "phiên bản đó; không trang nào bị xóa.",
        "The data on this station was written by a newer sohoa version. Call the technician to "
        "install that version again; no page has been deleted.",
    ),
    "import_done": (
        "Đã nhập {pages} trang vào lô {batch}.",
        "Imported {pages} page(s) into batch {batch}.",
    ),
    "import_refused": (
        "Không đọc được tệp “{name}” (tệp hỏng hoặc không phải ảnh, PDF). Các tệp khác vẫn "
        "được giữ.",
        "Cannot read “{name}” (damaged, or not an image or PDF). The other files are kept.",
    ),
    "import_nothing": ("Không có tệp nào nhập được.", "No file could be imported."),
    "config_invalid": (
        "Cài đặt của trạm quét bị sai. Gọi cán bộ kỹ thuật (chi tiết ở dòng nhật ký phía trên).",
        "The station's settings are wrong. Call the technician (details in the log line above).",
    ),
    "device_not_enrolled": (
        "Máy quét này chưa được đăng ký với kho lưu trữ nên chưa gửi được. Các trang đã quét "
        "vẫn được giữ an toàn trên máy. Gọi cán bộ kỹ thuật để đăng ký thiết bị.",
        "This station is not enrolled with the archive yet, so nothing can be sent. Pages "
        "already scanned are kept safe here. Call the technician to enrol it.",
    ),
    "wrong_user": (
        "Lệnh này phải chạy bằng tài khoản của dịch vụ sohoa (sudo -u {owner} sohoa-agent …), "
        "không chạy bằng root hay tài khoản khác.",
        "Run this as the sohoa service's user (sudo -u {owner} sohoa-agent …), not as root "
        "or another user.",
    ),
    "broker_unreachable": (
        "Không kết nối được kho lưu trữ. Dữ liệu vẫn an toàn trên máy, sẽ tự gửi lại sau.",
        "Cannot reach the archive. The data is safe here and will be sent later.",
    ),
    "broker_refused": (
        "Kho lưu trữ từ chối trạm quét này (trạm đã bị thu hồi hoặc sai mật khẩu). Dữ liệu vẫn "
        "an toàn trên máy. Gọi cán bộ kỹ thuật.",
        "The archive refused this station (revoked, or a wrong password). The data is safe "
        "here. Call the technician.",
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
        "Thiếu phần mềm nhận dạng chữ. Gọi cán bộ kỹ thuật.",
        "The text recognition software is missing. Call the technician.",
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
    "archive_key_refused": (
        "Bỏ qua một thông báo khóa mới của Lưu trữ: không có chữ ký của khóa trạm tin cậy.",
        "Ignored an announcement of a new archive key: not signed by a key this station trusts.",
    ),
    # Enrolment from a USB disk with the link down.
    "enrol_usb_done": (
        "Đã đăng ký trạm “{device}” từ USB. Khóa Lưu trữ: {fingerprint}. Trạm quét được ngay; "
        "lần đầu có mạng, trạm tự hoàn tất đăng ký rồi gửi trang.",
        "Station “{device}” enrolled from the USB disk. Archive key: {fingerprint}. It can "
        "scan now; the first time the link is up it completes its enrolment, then sends.",
    ),
    "enrol_usb_unreadable": (
        "Không đọc được tệp đăng ký trên USB. Cắm lại USB rồi thử lại.",
        "The enrolment file on the USB disk cannot be read. Re-plug the disk and try again.",
    ),
    "enrol_usb_damaged": (
        "Tệp đăng ký trên USB bị hỏng. Không đăng ký. Xin Lưu trữ tỉnh tệp mới.",
        "The enrolment file on the USB disk is damaged. Not enrolled. Ask for a new one.",
    ),
    "enrol_usb_forged": (
        "Tệp đăng ký trên USB đã bị sửa hoặc giả mạo (chữ ký sai). Không đăng ký. Báo Lưu trữ "
        "tỉnh.",
        "The enrolment file on the USB disk was altered or forged (bad signature). Not "
        "enrolled. Tell the archive.",
    ),
    "enrol_usb_wrong_archive": (
        "Tệp đăng ký trên USB không do Lưu trữ của trạm này ký. Không đăng ký. Báo Lưu trữ tỉnh.",
        "The enrolment file on the USB disk is not signed by this station's archive. Not "
        "enrolled. Tell the archive.",
    ),
    "enrol_usb_unanchored": (
        "Cần dấu khóa Lưu trữ in trên phiếu đăng ký để kiểm tra tệp USB. Không đăng ký.",
        "The archive key fingerprint printed on the enrolment sheet is needed to check the "
        "USB file. Not enrolled.",
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
    "file_error": (
        "Không đọc hoặc ghi được tệp trên máy. Dữ liệu đã lưu vẫn an toàn. Gọi cán bộ kỹ thuật.",
        "A file on this station cannot be read or written. Saved data is safe. Call the "
        "technician.",
    ),
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
        "Ghi ra USB bị lỗi. Bản chép dở đã được bỏ; dữ liệu trên máy vẫn an toàn. Thử lại "
        "hoặc dùng USB khác.",
        "Writing to the USB disk failed. The partial copy was removed; the data on this "
        "device is safe. Try again or use another disk.",
    ),
    "export_secret_skipped": (
        "{batches} lô có độ mật không được chép ra USB (quy định bảo vệ bí mật nhà nước).",
        "{batches} secret (mật) batch(es) were not copied: state-secret records never "
        "leave this device.",
    ),
    "export_quarantined": (
        "Lô {batch} bị cách ly: tệp trên máy đã bị thay đổi. Gọi cán bộ kỹ thuật.",
        "Batch {batch} quarantined: a local file changed. Call the technician.",
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
        "Bỏ qua biên nhận “{name}”: không hợp lệ hoặc không có chữ ký của kho lưu trữ.",
        "Ignored receipt “{name}”: invalid, or not signed by the archive.",
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
    # The scan button and the hardware profiles (agent/button.py, agent/profiles.py).
    "button.port_missing": (
        "Không thấy nút bấm quét (hộp nút hoặc bàn đạp). Kiểm tra dây cắm, rồi khởi động lại "
        "trạm quét.",
        "The scan button (button box or pedal) is not there. Check its cable, then restart "
        "the station.",
    ),
    "button.port_permission": (
        "Dịch vụ sohoa không được phép dùng nút bấm quét. Gọi cán bộ kỹ thuật.",
        "The sohoa service may not use the scan button. Call the technician.",
    ),
    "button.bad_settings": (
        "Cài đặt nút bấm quét không đúng. Gọi cán bộ kỹ thuật.",
        "The scan button's settings are wrong. Call the technician.",
    ),
    "button.unknown_kind": (
        "Cài đặt nút bấm quét không đúng. Gọi cán bộ kỹ thuật.",
        "The scan button's settings are wrong. Call the technician.",
    ),
    "button.pyserial_too_old": (
        "Phần mềm điều khiển nút bấm quét đã cũ. Gọi cán bộ kỹ thuật.",
        "The scan button's driver software is too old. Call the technician.",
    ),
    "profile.invalid": (
        "Tệp mô tả thiết bị quét bị lỗi. Gọi cán bộ kỹ thuật.",
        "A scanner description file is broken. Call the technician.",
    ),
    "profile.duplicate": (
        "Tệp mô tả thiết bị quét bị trùng. Gọi cán bộ kỹ thuật.",
        "A scanner description file is duplicated. Call the technician.",
    ),
    "profile.no_generic": (
        "Thiếu tệp mô tả thiết bị quét chung. Gọi cán bộ kỹ thuật.",
        "The generic scanner description is missing. Call the technician.",
    ),
    "profile.source_unsupported": (
        "Máy quét này không có khay giấy được chọn. Đặt giấy lên mặt kính hoặc gọi cán bộ kỹ "
        "thuật.",
        "This scanner has no such paper source. Use the glass, or call the technician.",
    ),
    "profile.source_unavailable": (
        "Máy quét này không có khay giấy được chọn. Đặt giấy lên mặt kính hoặc gọi cán bộ kỹ "
        "thuật.",
        "This scanner has no such paper source. Use the glass, or call the technician.",
    ),
    "profile.mode_unsupported": (
        "Máy quét này không quét được chế độ màu cần thiết. Gọi cán bộ kỹ thuật.",
        "This scanner cannot scan in the colour mode required. Call the technician.",
    ),
    "profile.mode_unavailable": (
        "Máy quét này không quét được chế độ màu cần thiết. Gọi cán bộ kỹ thuật.",
        "This scanner cannot scan in the colour mode required. Call the technician.",
    ),
    "profile.option_missing": (
        "Máy quét này không cho chọn độ phân giải. Gọi cán bộ kỹ thuật.",
        "This scanner does not let the resolution be set. Call the technician.",
    ),
}

# What to do about each error a station can report (its key shows in `sohoa-agent status`,
# the journal and the archive's station list). docs/operations.md carries this table, made
# by scripts/error_table.py; tests/test_runbooks.py keeps both complete and in step.
ACTIONS: dict[str, tuple[str, str]] = {
    "scan_no_paper": (
        "Đặt giấy vào khay nạp rồi bấm nút.",
        "Load paper in the feeder and press the button.",
    ),
    "scanner_not_found": (
        "Kiểm tra nguồn và cáp USB của máy quét; `sohoa-agent devices` phải thấy máy quét.",
        "Check the scanner's power and USB cable; `sohoa-agent devices` must list it.",
    ),
    "scanner_busy": (
        "Đóng chương trình quét khác (hoặc chờ lần quét đang chạy xong) rồi bấm lại.",
        "Close the other scanning program (or wait for the running scan), press again.",
    ),
    "scanner_jammed": (
        "Gỡ giấy kẹt, đặt lại các tờ chưa quét, bấm nút: lô được quét tiếp.",
        "Clear the jam, reload the sheets not yet scanned, press: the batch continues.",
    ),
    "scanner_cover_open": (
        "Đóng nắp máy quét rồi bấm nút: lô được quét tiếp.",
        "Close the scanner cover and press: the batch continues.",
    ),
    "scanner_double_feed": (
        "Đặt lại tờ cuối cùng (tách rời các tờ dính nhau) rồi bấm nút.",
        "Reload the last sheet (separate stuck sheets) and press.",
    ),
    "scanner_failed": (
        "Tắt/bật máy quét, bấm lại; nếu còn lỗi: `journalctl -u sohoa-agent`, kiểm tra cáp.",
        "Power-cycle the scanner and press again; if it persists: `journalctl -u "
        "sohoa-agent`, check the cable.",
    ),
    "scanner_stalled": (
        "Nếu lặp lại: `journalctl -u sohoa-agent` (dòng scanner_stalled), kiểm tra cáp USB, "
        "nguồn máy quét và hồ sơ máy quét (`sohoa-agent devices`).",
        "If it recurs: `journalctl -u sohoa-agent` (line scanner_stalled), check the USB "
        "cable, the scanner's power and its profile (`sohoa-agent devices`).",
    ),
    "disk_full": (
        "Đồng bộ để giải phóng trang đã có biên nhận (`sohoa-agent sync --wait`, hoặc USB: "
        "`sohoa-agent export`); xem runbook “Ổ đĩa trạm quét đầy”.",
        "Sync to release receipted pages (`sohoa-agent sync --wait`, or USB: "
        "`sohoa-agent export`); see the runbook “Station disk full”.",
    ),
    "write_failed": (
        "Ổ đĩa/thẻ nhớ có thể hỏng: kiểm tra `dmesg`, thay thẻ nhớ; xem runbook “Trạm quét hỏng”.",
        "The disk or SD card may be failing: check `dmesg`, replace it; see the runbook "
        "“Broken station”.",
    ),
    "file_error": (
        "Kiểm tra quyền và ổ đĩa của `/var/lib/sohoa-agent` (thuộc người dùng sohoa).",
        "Check the permissions and disk of `/var/lib/sohoa-agent` (owned by sohoa).",
    ),
    "outbox_locked": (
        "Dịch vụ đang chạy: dùng nút bấm, hoặc `systemctl stop sohoa-agent` trước khi gõ lệnh.",
        "The service is running: use the button, or `systemctl stop sohoa-agent` first.",
    ),
    "outbox_newer": (
        "Đã quay lui về bản cũ hơn bản đã ghi hàng đợi: cài lại bản mới (runbook R8); hàng đợi "
        "được giữ nguyên, không xóa.",
        "Rolled back below the version that wrote the outbox: install the newer version again "
        "(runbook R8); the outbox is kept as it is, never delete it.",
    ),
    "import_refused": (
        "Tệp hỏng hoặc không phải ảnh/PDF: quét lại tờ đó; các tệp khác đã được nhận.",
        "The file is damaged or not an image/PDF: scan that sheet again; the rest is kept.",
    ),
    "config_invalid": (
        "Sửa `/etc/sohoa/agent.toml` theo dòng lỗi trong nhật ký (`journalctl -u sohoa-agent`).",
        "Fix `/etc/sohoa/agent.toml` as the journal line says (`journalctl -u sohoa-agent`).",
    ),
    "device_not_enrolled": (
        "Đăng ký trạm với kho lưu trữ (mã trạm riêng, không dùng tên máy); trang đã quét vẫn "
        "được giữ và sẽ gửi sau.",
        "Enrol the station with the archive (its own id, never the hostname); pages scanned "
        "meanwhile are kept and sent afterwards.",
    ),
    "wrong_user": (
        "Chạy lệnh bằng `sudo -u sohoa sohoa-agent …`; nếu root đã tạo tệp: "
        "`chown -R sohoa:sohoa /var/lib/sohoa-agent`.",
        "Run as `sudo -u sohoa sohoa-agent …`; if root created files: "
        "`chown -R sohoa:sohoa /var/lib/sohoa-agent`.",
    ),
    "broker_unreachable": (
        "Không cần làm gì nếu mạng chỉ mất tạm thời; nếu kéo dài: kiểm tra mạng/SIM, rồi "
        "runbook “Máy chủ MQTT ngừng”. Không mất dữ liệu.",
        "Nothing if the link is down for a while; if it lasts: check the network/SIM, then "
        "the runbook “Broker down”. Nothing is lost.",
    ),
    "broker_refused": (
        "Trạm bị thu hồi hoặc sai mật khẩu MQTT: kiểm tra với quản trị kho lưu trữ, đăng ký lại "
        "nếu cần.",
        "The station was revoked or its broker password is wrong: check with the archive's "
        "administrator, enrol again if needed.",
    ),
    "sync_timeout": (
        "Chạy lại sau; các trang vẫn trên máy đến khi có biên nhận.",
        "Run again later; the pages stay here until their receipt.",
    ),
    "ocr_unavailable": (
        "Cài lại: `apt install tesseract-ocr tesseract-ocr-vie`.",
        "Reinstall: `apt install tesseract-ocr tesseract-ocr-vie`.",
    ),
    "internal_error": (
        "Gửi cho người phát triển dòng lỗi trong `journalctl -u sohoa-agent` (hoặc chạy lại "
        "lệnh với `-v`).",
        "Send the developers the error from `journalctl -u sohoa-agent` (or run the command "
        "again with `-v`).",
    ),
    "coversheet_invalid": (
        "Sửa mã hồ sơ / số thứ tự văn bản rồi in lại.",
        "Correct the file code / document number and print again.",
    ),
    "export_no_target": (
        "Cắm USB và chờ máy nhận (mount), rồi chạy lại.",
        "Plug the USB disk in, wait until it is mounted, run again.",
    ),
    "export_no_space": (
        "Dùng USB lớn hơn hoặc xóa bớt tệp trên USB.",
        "Use a larger disk or free space on it.",
    ),
    "export_write_failed": (
        "Thử USB khác; dữ liệu trên máy không bị ảnh hưởng.",
        "Try another disk; the data on the station is untouched.",
    ),
    "export_quarantined": (
        "Tệp trên máy đã bị thay đổi: không xóa gì, gọi cán bộ kỹ thuật kiểm tra ổ đĩa.",
        "A local file changed: delete nothing, have the technician check the disk.",
    ),
    "receipts_refused": (
        "Biên nhận không có chữ ký đúng của kho: không dùng USB đó; báo quản trị kho lưu trữ.",
        "The receipt is not signed by this archive: do not use that disk; tell the "
        "archive's administrator.",
    ),
    "receipts_server_refused": (
        "Chép lại bằng `sohoa-agent export` lần sau; nếu lặp lại: báo quản trị kho lưu trữ.",
        "They go again with the next `sohoa-agent export`; if it repeats: tell the "
        "archive's administrator.",
    ),
    "startup_ocr_missing": (
        "Chạy lệnh `apt install …` mà dòng lỗi ghi, rồi `systemctl restart sohoa-agent`.",
        "Run the `apt install …` line the message gives, then `systemctl restart sohoa-agent`.",
    ),
    "startup_sane_missing": (
        "Chạy lệnh `apt install …` mà dòng lỗi ghi, rồi `systemctl restart sohoa-agent`.",
        "Run the `apt install …` line the message gives, then `systemctl restart sohoa-agent`.",
    ),
    "startup_broker_invalid": (
        "Sửa trường mà dòng lỗi ghi (`mqtt_url` hoặc `mqtt_password_file` trong "
        "`/etc/sohoa/agent.toml`), rồi khởi động lại dịch vụ.",
        "Fix the setting the message names (`mqtt_url` or `mqtt_password_file` in "
        "`/etc/sohoa/agent.toml`), then restart the service.",
    ),
    # Enrolment (agent/uplink/enrol.py, issue 14): what the technician does at the station.
    "enrol_already": (
        "Trạm đã đăng ký; chỉ đăng ký lại (thêm `--force`) khi kho đã cấp phiếu mới.",
        "Already enrolled; enrol again (add `--force`) only with a new sheet from the archive.",
    ),
    "enrol_bad_code": (
        "Gõ lại mã trên phiếu, hoặc quét lại phiếu; mã sai mãi thì xin phiếu mới.",
        "Type the sheet's code again or rescan the sheet; if it stays wrong, ask for a new one.",
    ),
    "enrol_bad_reply": (
        "Không đăng ký; báo quản trị kho lưu trữ (có thể có kẻ giả mạo trên đường truyền).",
        "Not enrolled; tell the archive's administrator (someone may be tampering with the link).",
    ),
    "enrol_no_answer": (
        "Kiểm tra mạng rồi chạy lại `sohoa-agent enrol`; mã vẫn dùng được đến khi hết hạn.",
        "Check the link and run `sohoa-agent enrol` again; the code stays good until it expires.",
    ),
    "enrol_no_sheet": (
        "Đặt phiếu đăng ký thẳng, đúng mặt, rồi quét lại.",
        "Put the enrolment sheet in straight, right side up, and scan again.",
    ),
    "enrol_plain_refused": (
        "Xin phiếu mới có địa chỉ `mqtts://` (máy chủ: `station_broker_url`).",
        "Ask for a new sheet with an `mqtts://` address (server: `station_broker_url`).",
    ),
    "enrol_refused_by_broker": (
        "Mã đã dùng, hết hạn hoặc sai: xin phiếu mới (`sohoa-server device add … --replace`).",
        "The code is used, expired or wrong: ask for a new sheet "
        "(`sohoa-server device add … --replace`).",
    ),
    "enrol_wrong_archive": (
        "Không đăng ký; báo quản trị kho lưu trữ, đối chiếu dấu khóa in trên phiếu.",
        "Not enrolled; tell the archive's administrator and compare the key printed on the sheet.",
    ),
    "archive_key_refused": (
        "Không làm gì thêm; nếu lặp lại, báo quản trị kho lưu trữ (có thể bị giả mạo).",
        "Nothing to do; if it repeats, tell the archive's administrator (possibly forged).",
    ),
    "enrol_usb_unreadable": (
        "Cắm lại USB; chạy lại `sohoa-agent enrol --usb TỆP --fingerprint DẤU-KHÓA`.",
        "Re-plug the USB disk; run `sohoa-agent enrol --usb FILE --fingerprint KEY` again.",
    ),
    "enrol_usb_damaged": (
        "Xin tệp mới: `sohoa-server device add … --replace --usb-file TỆP`.",
        "Ask for a new file: `sohoa-server device add … --replace --usb-file FILE`.",
    ),
    "enrol_usb_forged": (
        "Không dùng USB này; báo quản trị kho lưu trữ, xin tệp mới (`--usb-file`).",
        "Do not use this disk; tell the archive's administrator, ask for a new file "
        "(`--usb-file`).",
    ),
    "enrol_usb_wrong_archive": (
        "Không đăng ký; báo quản trị kho lưu trữ, đối chiếu dấu khóa in trên phiếu.",
        "Not enrolled; tell the archive's administrator and compare the key printed on the sheet.",
    ),
    "enrol_usb_unanchored": (
        "Chạy lại với `--fingerprint` và dấu khóa in trên phiếu (`sohoa-server device add`).",
        "Run it again with `--fingerprint` and the key printed on the sheet "
        "(`sohoa-server device add`).",
    ),
    "export_not_enrolled": (
        "Đăng ký trạm trước (`sohoa-agent enrol MÃ`), rồi chép ra USB.",
        "Enrol the station first (`sohoa-agent enrol CODE`), then export.",
    ),
    "broker_untrusted": (
        "Lấy tệp CA của Lưu trữ tỉnh và đăng ký lại với `--ca TỆP`; không tắt kiểm tra chứng chỉ.",
        "Get the archive's CA file and enrol again with `--ca FILE`; never turn the "
        "certificate check off.",
    ),
    "button.port_missing": (
        "Cắm lại dây hộp nút/bàn đạp; `systemctl restart sohoa-agent`.",
        "Re-plug the button box/pedal; `systemctl restart sohoa-agent`.",
    ),
    "button.port_permission": (
        "Thêm người dùng sohoa vào nhóm `dialout`/`input` (xem unit sohoa-agent.service).",
        "Add the sohoa user to the `dialout`/`input` groups (see sohoa-agent.service).",
    ),
    "button.bad_settings": (
        "Sửa `button`/`button_port` trong `/etc/sohoa/agent.toml`.",
        "Fix `button`/`button_port` in `/etc/sohoa/agent.toml`.",
    ),
    "button.unknown_kind": (
        "Sửa `button` trong `/etc/sohoa/agent.toml` (none, serial-box, modem-line, usb-key, "
        "scanner-button).",
        "Fix `button` in `/etc/sohoa/agent.toml` (none, serial-box, modem-line, usb-key, "
        "scanner-button).",
    ),
    "button.pyserial_too_old": (
        "Cập nhật phần mềm trạm (`scripts/bootstrap.sh venv agent`).",
        "Update the station's software (`scripts/bootstrap.sh venv agent`).",
    ),
    "profile.invalid": (
        "Sửa hoặc xóa tệp hồ sơ thiết bị nêu trong nhật ký (`hw_profiles_dir`).",
        "Fix or remove the hardware profile the journal names (`hw_profiles_dir`).",
    ),
    "profile.duplicate": (
        "Xóa tệp hồ sơ thiết bị bị trùng trong `hw_profiles_dir`.",
        "Remove the duplicated hardware profile in `hw_profiles_dir`.",
    ),
    "profile.no_generic": (
        "Cài lại phần mềm trạm (thiếu `hw_profiles/scanners/generic.toml`).",
        "Reinstall the station's software (`hw_profiles/scanners/generic.toml` is missing).",
    ),
    "profile.source_unsupported": (
        "Đổi `source` trong `/etc/sohoa/agent.toml` cho hợp với máy quét.",
        "Set `source` in `/etc/sohoa/agent.toml` to one this scanner has.",
    ),
    "profile.source_unavailable": (
        "Đổi `source` trong `/etc/sohoa/agent.toml` cho hợp với máy quét.",
        "Set `source` in `/etc/sohoa/agent.toml` to one this scanner has.",
    ),
    "profile.mode_unsupported": (
        "Dùng máy quét màu (luật yêu cầu ảnh màu) hoặc báo cán bộ kỹ thuật.",
        "Use a colour scanner (the law asks for colour) or tell the technician.",
    ),
    "profile.mode_unavailable": (
        "Dùng máy quét màu (luật yêu cầu ảnh màu) hoặc báo cán bộ kỹ thuật.",
        "Use a colour scanner (the law asks for colour) or tell the technician.",
    ),
    "profile.option_missing": (
        "Máy quét không hợp; dùng máy quét có chọn được độ phân giải (≥ 200 dpi).",
        "Unsuitable scanner; use one whose resolution can be set (≥ 200 dpi).",
    ),
}


def number(value: float, lang: Lang = "vi", digits: int = 1) -> str:
    """A number as the reader writes it: Vietnamese groups thousands with a dot and puts a
    comma before decimals (1.234,5); English the other way round (1,234.5)."""
    text = f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"
    if lang == "vi":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def t(key: str, lang: Lang = "vi", /, **params: object) -> str:
    """The operator line for ``key``. Numbers (int, float; not bool) are written the
    language's way: pass sizes as floats (megabytes with one decimal), counts as ints."""
    vi, en = CATALOG.get(key, (key, key))
    text = vi if lang == "vi" else en
    shown = {
        k: number(v, lang) if isinstance(v, int | float) and not isinstance(v, bool) else v
        for k, v in params.items()
    }
    try:
        return text.format(**shown)
    except (KeyError, IndexError):
        return text


# agent.pipeline.quality's reasons, as the technician reads them (`sohoa-agent status` and
# the station's screen): (vi, en).
REVIEW_REASONS = {
    "no_text": ("không đọc được chữ", "no text read"),
    "implausible_text": ("chữ nhận dạng có vẻ sai", "text looks wrong"),
    "low_confidence": ("độ tin cậy thấp", "low confidence"),
    "unsure_words": ("nhiều từ không chắc", "many unsure words"),
    "dot_matrix": ("chữ in kim, chữ số dễ đọc nhầm", "dot-matrix print, digits misread"),
    "low_score": ("điểm chữ thấp", "low text score"),
    "junk_line": (
        "có dòng phần lớn là ký hiệu, không phải chữ",
        "a line mostly of marks, not words",
    ),
    "unread_text": (
        "có chữ trên trang không được nhận dạng",
        "text on the page was left unread",
    ),
    "failed": ("xử lý lỗi, giữ bản quét gốc", "processing failed, capture kept"),
}
