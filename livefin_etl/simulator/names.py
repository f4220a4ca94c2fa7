"""Chinese lookup tables and vectorised builders for names, phones and addresses.

Every string is a pure function of an integer key (a hashed buyer id, a merchant
index), so the same buyer always has the same phone, name and address, and the
output never depends on Python's hash seed. All characters are GBK-encodable.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# (province, cities, weight): e-commerce sellers and buyers are concentrated on the coast.
PROVINCES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("广东省", ("广州市", "深圳市", "东莞市", "佛山市"), 12.0),
    ("浙江省", ("杭州市", "宁波市", "温州市", "金华市"), 12.0),
    ("江苏省", ("南京市", "苏州市", "无锡市", "常州市"), 9.0),
    ("福建省", ("福州市", "厦门市", "泉州市"), 6.0),
    ("山东省", ("济南市", "青岛市", "临沂市"), 6.0),
    ("上海市", ("上海市",), 5.0),
    ("北京市", ("北京市",), 4.0),
    ("河南省", ("郑州市", "洛阳市"), 4.0),
    ("河北省", ("石家庄市", "保定市"), 3.0),
    ("湖北省", ("武汉市", "宜昌市"), 3.5),
    ("湖南省", ("长沙市", "株洲市"), 3.0),
    ("四川省", ("成都市", "绵阳市"), 4.0),
    ("重庆市", ("重庆市",), 2.5),
    ("安徽省", ("合肥市", "芜湖市"), 2.5),
    ("江西省", ("南昌市", "赣州市"), 2.0),
    ("广西壮族自治区", ("南宁市", "桂林市"), 2.0),
    ("云南省", ("昆明市", "大理市"), 2.0),
    ("陕西省", ("西安市", "宝鸡市"), 2.0),
    ("辽宁省", ("沈阳市", "大连市"), 2.0),
    ("天津市", ("天津市",), 1.5),
    ("黑龙江省", ("哈尔滨市", "大庆市"), 1.2),
    ("吉林省", ("长春市", "吉林市"), 1.0),
    ("山西省", ("太原市", "大同市"), 1.0),
    ("贵州省", ("贵阳市", "遵义市"), 1.0),
    ("海南省", ("海口市", "三亚市"), 0.8),
    ("甘肃省", ("兰州市", "天水市"), 0.6),
    ("内蒙古自治区", ("呼和浩特市", "包头市"), 0.6),
    ("新疆维吾尔自治区", ("乌鲁木齐市", "喀什市"), 0.5),
    ("宁夏回族自治区", ("银川市",), 0.3),
    ("青海省", ("西宁市",), 0.2),
    ("西藏自治区", ("拉萨市",), 0.1),
)
DISTRICTS = (
    "城关区",
    "新城区",
    "高新区",
    "经开区",
    "东城区",
    "西城区",
    "南湖区",
    "北苑区",
    "滨江区",
    "江北区",
    "中心区",
    "开发区",
)
ROADS = (
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "和平路",
    "文化路",
    "新华路",
    "长江路",
    "黄河路",
    "胜利路",
    "学府路",
    "科技路",
    "青年路",
    "朝阳路",
    "迎宾大道",
    "工业大道",
    "滨湖路",
    "金桥路",
    "花园路",
    "光明路",
)
SURNAMES = tuple(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾"
    "毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = tuple(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚华玉萍红玲芬燕彬鹏辉建国志海晓东婷雪梅慧琳"
    "欣怡轩浩然宇航思远涵雨桐鸣琪佳俊博文丹宁凯鑫悦晨阳瑶颖倩雯昊天乐嘉豪子婧蕾"
)
BRAND = tuple(
    "锦绣优品鲜味悦家美颜星辰云上花语森林嘉禾盛世华彩金玉满堂乐享初心源野小麦田蜜语清风"
    "雅致匠造尚潮柒月暖阳"
)
CATEGORY_NOUNS = (
    ("服饰", "女装", "男装", "童装", "鞋服"),
    ("食品", "特产", "零食", "生鲜", "茶叶"),
    ("家居", "家纺", "日用", "厨具", "百货"),
    ("美妆", "护肤", "彩妆", "个护", "香氛"),
    ("数码", "电器", "电子", "手机配件", "科技"),
)
STORE_TYPES = ("旗舰店", "专营店", "官方店", "专卖店", "小店", "工厂店")

CARRIERS = (
    "顺丰速运",
    "中通快递",
    "圆通速递",
    "韵达快递",
    "申通快递",
    "极兔速递",
    "京东物流",
    "中国邮政",
)
CARRIER_PREFIX = ("SF", "ZT", "YT", "YD", "ST", "JT", "JD", "EM")
CARRIER_WEIGHTS = (0.12, 0.22, 0.18, 0.14, 0.10, 0.14, 0.06, 0.04)

PROVINCE_NAMES = tuple(p[0] for p in PROVINCES)
PROVINCE_WEIGHTS = np.array([p[2] for p in PROVINCES]) / sum(p[2] for p in PROVINCES)
_CITY_FLAT = tuple(c for p in PROVINCES for c in p[1])
_CITY_COUNT = np.array([len(p[1]) for p in PROVINCES], dtype=np.uint64)
_CITY_OFFSET = np.concatenate([[0], np.cumsum(_CITY_COUNT)[:-1]]).astype(np.uint64)
_PROV_CDF = np.cumsum(PROVINCE_WEIGHTS)
_CITY_SHORT = tuple(c[:-1] if c.endswith("市") else c for c in _CITY_FLAT)
_NOUNS = tuple(n for row in CATEGORY_NOUNS for n in row)

_U64 = np.uint64


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast bijective hash on uint64 arrays."""
    z = np.asarray(x).astype(np.uint64) + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


_LOOKUPS: dict[tuple[str, ...], pl.Series] = {}


def _pick(values: tuple[str, ...], idx: np.ndarray) -> pl.Expr:
    """values[idx] as a polars expression (lookup Series are built once)."""
    s = _LOOKUPS.get(values)
    if s is None:
        s = _LOOKUPS[values] = pl.Series(values, dtype=pl.String)
    return pl.lit(s).gather(pl.lit(pl.Series(idx.astype(np.int64))))


def _num(x: np.ndarray, width: int = 0) -> pl.Expr:
    e = pl.lit(pl.Series(x.astype(np.int64))).cast(pl.String)
    return e.str.zfill(width) if width else e


def province_of(h: np.ndarray) -> np.ndarray:
    """Weighted province index from a uint64 hash."""
    u = (h % _U64(1_000_003)).astype(np.float64) / 1_000_003.0
    return np.minimum(np.searchsorted(_PROV_CDF, u, side="right"), len(PROVINCES) - 1)


def city_of(prov: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Flat city index inside the given provinces."""
    p = prov.astype(np.int64)
    return (_CITY_OFFSET[p] + h % _CITY_COUNT[p]).astype(np.int64)


def phones(h: np.ndarray) -> pl.Expr:
    """11-digit mainland mobile numbers: 1, then 3-9, then nine digits."""
    second = (h % _U64(7) + _U64(3)).astype(np.int64)
    rest = ((h >> _U64(3)) % _U64(1_000_000_000)).astype(np.int64)
    return pl.concat_str([pl.lit("1"), _num(second), _num(rest, 9)])


def person_names(h: np.ndarray) -> pl.Expr:
    """Two- or three-character Chinese personal names."""
    sur = ((h >> _U64(34)) % _U64(len(SURNAMES))).astype(np.int64)
    g1 = ((h >> _U64(42)) % _U64(len(GIVEN))).astype(np.int64)
    g2 = ((h >> _U64(50)) % _U64(len(GIVEN) + 40)).astype(np.int64)  # >= len(GIVEN): two-char name
    given2 = _pick(GIVEN + ("",) * 40, g2)
    return pl.concat_str([_pick(SURNAMES, sur), _pick(GIVEN, g1), given2])


def addresses(h: np.ndarray) -> pl.Expr:
    """ "省 市 区 路 号" delivery addresses."""
    h2 = mix64(h ^ _U64(0x5DEECE66D))
    prov = province_of(h2)
    city = city_of(prov, h2 >> _U64(20))
    dist = ((h2 >> _U64(28)) % _U64(len(DISTRICTS))).astype(np.int64)
    road = ((h2 >> _U64(36)) % _U64(len(ROADS))).astype(np.int64)
    num = ((h2 >> _U64(44)) % _U64(399) + _U64(1)).astype(np.int64)
    return pl.concat_str(
        [
            _pick(PROVINCE_NAMES, prov),
            _pick(_CITY_FLAT, city),
            _pick(DISTRICTS, dist),
            _pick(ROADS, road),
            _num(num) + "号",
        ],
        separator=" ",
    )


def shop_names(prov: np.ndarray, city_h: np.ndarray, cat: np.ndarray, h: np.ndarray) -> pl.Expr:
    """Shop names like 杭州锦绣服饰旗舰店: city, two brand characters, category noun, store type."""
    city = city_of(prov, city_h)
    b1 = (h % _U64(len(BRAND))).astype(np.int64)
    b2 = ((h >> _U64(8)) % _U64(len(BRAND))).astype(np.int64)
    noun_i = ((h >> _U64(16)) % _U64(5)).astype(np.int64)
    store = ((h >> _U64(24)) % _U64(len(STORE_TYPES))).astype(np.int64)
    return pl.concat_str(
        [
            _pick(_CITY_SHORT, city),
            _pick(BRAND, b1),
            _pick(BRAND, b2),
            _pick(_NOUNS, cat.astype(np.int64) * 5 + noun_i),
            _pick(STORE_TYPES, store),
        ]
    )


def tracking_numbers(carrier: np.ndarray, h: np.ndarray) -> pl.Expr:
    """Carrier prefix plus 12 digits; -1 carrier means no tracking number (null)."""
    has = carrier >= 0
    digits = (h % _U64(10**12)).astype(np.int64)
    pref = _pick(CARRIER_PREFIX, np.where(has, carrier, 0))
    return (
        pl.when(pl.lit(pl.Series(has)))
        .then(pl.concat_str([pref, _num(digits, 12)]))
        .otherwise(None)
    )
