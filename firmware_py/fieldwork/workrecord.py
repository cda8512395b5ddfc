"""Work records (Art. 12, R12.3): one per interruption, as JSON and as readable text.

The regulation asks the officer to write, after every interruption, a work record stating
the reason and its basis, reviewed by the unit head and filed with the evidence. The
device drafts it from what it knows — when recording stopped and resumed, how long it was
off, the reason and who gave it — in both languages; the review state starts *pending*
and is changed at the dock (approved or returned), never on the device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from device.clock import Timestamp
from firmware_py.config import DeviceConfig, InterruptionPolicy
from firmware_py.fieldwork.interruptions import PENDING, Interruption
from firmware_py.evidence.store import DurableFile

REVIEW_STATES = ("pending", "approved", "returned")


def work_record(interruption: Interruption, activity: dict[str, Any], stopped: Timestamp,
                resumed: Timestamp | None, device: DeviceConfig,
                policy: InterruptionPolicy) -> dict[str, Any]:
    reason = policy.reasons.get(interruption.reason)
    return {
        "kind": "work_record",
        "format": 1,
        "unit": device.device.unit,
        "device": device.device.id,
        "officer": device.device.officer or None,
        "activity": activity,
        "interruption": interruption.number,
        "stopped": stopped.to_json(),
        "resumed": resumed.to_json() if resumed else None,
        "off_s": None if interruption.off_s is None else round(interruption.off_s, 1),
        "closed_by": interruption.closed_by,
        "reason": {
            "key": interruption.reason,
            "code": reason.code if reason else None,
            "zh": reason.zh if reason else "待补充（在基座填写）",
            "en": reason.en if reason else "pending: to be given at the dock",
            "chosen_by": interruption.chosen_by,
            "automatic": interruption.automatic,
            "detail": interruption.detail,
        },
        "basis": f"{policy.basis}（{reason.code}）" if reason else policy.basis,
        "review": {"state": "pending", "reviewer": None, "at": None, "note": None},
    }


def work_record_text(record: dict[str, Any]) -> str:
    """The same record as a page a unit head reads."""
    reason = record["reason"]
    stopped, resumed = record["stopped"], record["resumed"]
    off = record["off_s"]
    off_text = "—" if off is None else f"{int(off // 60)} min {off % 60:.0f} s"
    chosen = {"device": "设备自动记录 / recorded by the device",
              PENDING: "待补充 / pending"}.get(reason["chosen_by"], reason["chosen_by"])
    lines = [
        "执法音像记录中断工作记录 / Work record of a recording interruption",
        "",
        f"单位 Unit:              {record['unit']}",
        f"设备 Device:            {record['device']}",
        f"执法人员 Officer:       {record['officer'] or '未分配 / unassigned'}",
        f"执法活动 Activity:      {record['activity']['id']} "
        f"({record['activity'].get('matter_zh', '')} / {record['activity'].get('matter_en', '')})",
        f"中断序号 Interruption:  {record['interruption']}",
        f"中断时间 Stopped:       {stopped['local']}",
        f"恢复时间 Resumed:       {resumed['local'] if resumed else '—'}"
        f"{'  (活动结束 / activity ended)' if record['closed_by'] == 'activity_end' else ''}",
        f"中断时长 Off for:       {off_text}",
        f"中断原因 Reason:        {reason['zh']}",
        f"                        {reason['en']}",
        f"原因来源 Given by:      {chosen}",
    ]
    if reason["detail"]:
        lines.append(f"设备记录 Device saw:    {reason['detail']}")
    lines += [
        f"依据 Basis:             {record['basis']}",
        "",
        f"审核状态 Review:        {record['review']['state']}",
        "负责人审核 Reviewed by:  ______________________   日期 Date: ____________",
        "",
    ]
    return "\n".join(lines)


def write_work_record(directory: Path, record: dict[str, Any]) -> tuple[Path, Path]:
    stem = directory / f"interruption-{record['interruption']:02d}"
    paths = (stem.with_suffix(".json"), stem.with_suffix(".txt"))
    for path, data in ((paths[0], json.dumps(record, ensure_ascii=False, indent=1)),
                       (paths[1], work_record_text(record))):
        f = DurableFile(path)
        f.write(data.encode())
        f.close()
    return paths
