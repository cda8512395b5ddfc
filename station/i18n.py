"""The station's words in English and Chinese; the page's language is the user's choice
(a cookie), else the browser's Accept-Language, else Chinese — the unit's language."""

from __future__ import annotations

LANGUAGES = ("zh", "en")

# key: (en, zh)
WORDS: dict[str, tuple[str, str]] = {
    "station": ("Evidence station", "执法音像记录管理站"),
    "login": ("Log in", "登录"),
    "logout": ("Log out", "退出"),
    "user": ("User", "用户名"),
    "password": ("Password", "密码"),
    "wrong_login": ("Wrong user name or password.", "用户名或密码错误。"),
    "locked": ("Too many wrong passwords: this account is locked until",
               "密码错误次数过多，账户已锁定至"),
    "forbidden": ("Your role may not open this page.", "您的角色无权访问此页面。"),
    "activities": ("Activities", "执法活动"),
    "activity": ("Activity", "执法活动"),
    "device": ("Device", "记录仪"),
    "officer": ("Officer", "执法人员"),
    "matter": ("Matter type", "事项类型"),
    "date": ("Date", "日期"),
    "place": ("Place", "地点"),
    "flags": ("Flags", "标记"),
    "search": ("Search", "查询"),
    "from": ("From", "起"),
    "to": ("To", "止"),
    "any": ("any", "全部"),
    "incident": ("incident", "事件标记"),
    "long_term": ("long-term", "长期保存"),
    "interruption": ("interruption", "中断"),
    "interruptions": ("Interruptions", "中断"),
    "overdue": ("overdue", "逾期"),
    "unfiled": ("not filed", "未归档"),
    "received": ("received", "已接收"),
    "filed_pending": ("filed, awaiting a second custodian", "已归档，待第二名保管员确认"),
    "filed": ("filed", "已归档"),
    "file_it": ("File this activity", "归档"),
    "confirm_filing": ("Confirm the filing", "确认归档"),
    "recordings": ("Recordings", "录像"),
    "timeline": ("Timeline", "时间线"),
    "photos": ("Photos", "照片"),
    "track": ("GNSS track", "定位轨迹"),
    "verification": ("Verification", "校验"),
    "all_valid": ("all seals valid, every gap explained", "全部签封有效，所有间断均有说明"),
    "not_valid": ("NOT VALID", "校验未通过"),
    "work_records": ("Work records", "工作记录"),
    "review": ("Review", "审核"),
    "approve": ("Approve", "批准"),
    "return": ("Return", "退回"),
    "comment": ("Comment", "意见"),
    "reason": ("Reason", "原因"),
    "custody": ("Custody", "保管链"),
    "access_log": ("Access log", "访问日志"),
    "ledger": ("Ledger", "使用台账"),
    "check_out": ("Check out", "领用"),
    "check_in": ("Check in", "归还"),
    "retention": ("Retention", "保存期限"),
    "hold": ("Hold", "保全"),
    "place_hold": ("Place a hold", "设置保全"),
    "release_hold": ("Release the hold", "解除保全"),
    "purge": ("Purge", "删除"),
    "request_purge": ("Request purge", "申请删除"),
    "confirm_purge": ("Confirm purge", "确认删除"),
    "purgeable_soon": ("Purgeable in the next 30 days", "30日内到期可删除"),
    "yearly": ("Yearly review", "年度评查"),
    "admin": ("Administration", "系统管理"),
    "users": ("Users", "用户"),
    "role": ("Role", "角色"),
    "add": ("Add", "添加"),
    "save": ("Save", "保存"),
    "export": ("Export (sealed copy)", "导出（签封副本）"),
    "set_long_term": ("Keep long-term", "设为长期保存"),
    "months": ("months", "个月"),
    "expires": ("Expires", "到期"),
    "nothing": ("nothing", "无"),
    "pdf": ("PDF", "PDF"),
    "csv": ("CSV", "CSV"),
    "period": ("Period", "期间"),
    "run": ("Run", "生成"),
    "hours_by_officer": ("Recording hours by officer", "执法人员录像时长（小时）"),
    "role_custodian": ("custodian", "保管员"),
    "role_unit_head": ("unit head", "单位负责人"),
    "role_legal": ("legal office", "法制机构"),
    "role_admin": ("administrator", "管理员"),
}


def pick(accept_language: str | None, cookie: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "zh"


def translate(lang: str, key: str) -> str:
    en, zh = WORDS.get(key, (key, key))
    return zh if lang == "zh" else en
