"""Severity from how people write (issue 17): numbers in words, an audience or a count of people
stated in the text, phrase families per concept, negated and near-miss clauses, and the share
right on the held-out set (tests/data/severity/heldout.jsonl, never tuned on)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.events import Channel, Complaint, Contact, Severity
from services.common.errors import ConfigError
from services.common.policy import load_policy
from services.router import severity
from services.router.classify import assess, fold
from services.router.numerals import read_number
from services.router.severity import phrase_findings, stated_figures, word_amounts
from tools.measure import measure_severity

RULES = load_policy().router.severity
DATA = Path(__file__).parent / "data" / "severity"
HELD_OUT_FLOOR = 0.95  # share right on heldout.jsonl, overall; each language at least 0.93
# The rules alone on the held-out sets, rounded down. heldout-14 to -19 were each measured once on
# round 9 (92.5, 90.0, 88.4, 89.7, 92.2, 88.4 %) and again on round 10, which was written from the
# training sets without reading them (heldout-17's misses had been read): 93.4, 90.9, 89.7, 91.6,
# 93.8, 89.1 %. heldout-20 and -21, written after round 10, measured once: 90.3 % and 90.0 %;
# heldout-22 and -23, written after those with nothing changed, measured once: 91.9 % and 92.8 %.
HELDOUT_RULES = {14: (0.93, 0.91), 15: (0.90, 0.90), 16: (0.89, 0.88), 17: (0.91, 0.90),
                 18: (0.93, 0.93), 19: (0.89, 0.88), 20: (0.90, 0.89), 21: (0.90, 0.89),
                 22: (0.91, 0.89), 23: (0.92, 0.92)}


def complaint(text: str, **details: str | int | float | bool) -> Complaint:
    return Complaint(complaint_id="261203-0000000001", channel=Channel.web_form,
                     received_at=datetime(2026, 12, 3, 9, tzinfo=UTC), source_message_id="m",
                     customer=Contact(), customer_key="k", first_contact="web-desk", subject="",
                     description=text, details=details)


@pytest.mark.parametrize(("numeral", "value"), [
    ("一百二十", 120), ("一百二", 120), ("一百零五", 105), ("两万", 20_000), ("两万五", 25_000),
    ("一万两千", 12_000), ("3.5万", 35_000), ("120万", 1_200_000), ("十", 10), ("十几", 11),
    ("二十多", 20), ("五六十", 50), ("上百", 100), ("上千", 1000), ("数百", 200), ("几十万", 200_000),
    ("八十多万", 800_000), ("百万", 1_000_000), ("三亿五千万", 350_000_000),
    ("twelve", 12), ("twenty-five", 25), ("two hundred", 200), ("two hundred and fifty", 250),
    ("twelve hundred", 1200), ("a thousand", 1000), ("a dozen", 12), ("dozens", 24),
    ("dozens of", 24), ("hundreds of", 200), ("several hundred", 300), ("thousands", 2000),
    ("tens of thousands", 20_000), ("hundreds of thousands", 200_000), ("half a million", 500_000),
    ("200k", 200_000), ("1.2 million", 1_200_000), ("45,000", 45_000), ("five grand", 5000),
])
def test_numbers_written_in_words_are_read(numeral: str, value: float) -> None:
    # Given a numeral as people write it; when read; then its (least plausible) value
    assert read_number(numeral) == value


@pytest.mark.parametrize("numeral", ["a", "an", "of", "", "百货", "lots"])
def test_what_is_no_numeral_reads_as_none(numeral: str) -> None:
    assert read_number(numeral) is None


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("我是有几十万粉丝的博主", "audience", 200_000),
    ("粉丝有八十多万", "audience", 800_000),
    ("这条笔记10万+阅读", "audience", 100_000),
    ("my 200k followers", "audience", 200_000),
    ("a podcast with about 60k listeners", "audience", 60_000),
    ("my youtube channel has 20,000 subscribers", "audience", 20_000),
    ("tens of thousands of subscribers lost service", "affected", 20_000),
    ("上百户停水", "affected", 100),
    ("整栋楼几十户人家", "affected", 20),
    ("三百多个家长", "affected", 300),
    ("dozens of residents", "affected", 24),
    ("hundreds of small businesses", "affected", 200),
    ("a dozen of us", "affected", 12),
    # a group's or a channel's head count is an audience, judged by the audience's thresholds
    ("我是户外群的群主，群里三百人，我会提醒大家", "audience", 300),
    ("My Instagram is small, like 900 people, but they trust me", "audience", 900),
    ("I moderate a subreddit with 85k members and I'm posting this", "audience", 85_000),
    ("14k people follow me", "audience", 14_000),
    ("我在一个三万多人的钓鱼论坛当版主", "audience", 30_000),
    # ... unless its clause says what befell them, or the words before it name victims
    ("业主群里三十多户都漏水了", "affected", 30),
    ("At least 15 people in our Facebook group got the same bogus fee", "affected", 15),
    ("All 18 of us in the tour group were left standing at the hotel", "affected", 18),
    ("健身房突然关门跑路，我们会员群里二百多人，卡里都还有钱", "affected", 200),
    ("The airline stranded our whole charter group, 140 people, in Cancun", "affected", 140),
    # round 9: a count joined by a hyphen, or after "a team of", more audience and people nouns
    ("Our 220-unit complex has had no heat since Friday", "affected", 220),
    ("We're a team of 14 and lost a full day of work", "affected", 14),
    ("My show has about 250,000 weekly listeners", "audience", 250_000),
    ("我快手上有四十来万老铁", "audience", 400_000),
    ("业主群里统计了，受影响的少说也有三百多户", "affected", 300),
    ("300 attendees were turned away at the door", "affected", 300),
    # round 10
    ("180-something students got their attempts voided", "affected", 180),
    ("我的公众号文章十万加阅读是常态", "audience", 100_000),
    ("报了课没上完的学生有六十七个", "affected", 67),
])
def test_an_audience_or_a_count_of_people_stated_in_the_text(text: str, kind: str, value: float) -> None:
    # Given a number followed (or preceded) by what it counts; when read; then one figure
    [figure] = stated_figures(fold(text), RULES.stated, RULES.qualifiers)
    assert (figure.kind, figure.value) == (kind, value)


@pytest.mark.parametrize("text", ["打了十几次电话", "等了四十多分钟", "买了十几年", "100人民币", "I called 20 times",
                                  "customer for 15 years", "order 4482913 is missing",
                                  "a 300-room hotel", "a 12-month contract", "the class of 2019",
                                  # bystanders: the count is of people who were not affected
                                  "航班上坐了一百八十多人，就我一个人的行李找不到了",
                                  "The flight had 180 people and I seem to be the only one without a bag",
                                  "You'd think a company with 10,000 employees could answer one email"])
def test_counts_of_other_things_are_no_figure(text: str) -> None:
    assert stated_figures(fold(text), RULES.stated) == []


@pytest.mark.parametrize(("text", "severity", "reason"), [
    ("我有几十万粉丝，会把这事说出来", Severity.major, "public exposure (stated: '几十万粉丝' = 200,000)"),
    ("我的视频号有3.5万粉丝", Severity.urgent, "public exposure (stated: '3.5万粉丝' = 35,000)"),
    ("My TikTok has 8,000 followers.", Severity.general, "no severity signal"),
    ("小区上百户都停水三天", Severity.major, "many customers affected (stated: '上百户' = 100)"),
    ("Dozens of residents got the wrong bill", Severity.urgent,
     "many customers affected (stated: 'dozens of residents' = 24)"),
    ("同事三个人都遇到了", Severity.general, "no severity signal"),
    ("我微博五十多万粉，做美食测评的", Severity.major, "public exposure (stated: '五十多万粉' = 500,000)"),
    ("I've got 150k on TikTok and I just posted part 1", Severity.major,
     "public exposure (stated: '150k on tiktok' = 150,000)"),
    ("整架飞机两百多号人在机场滞留到凌晨", Severity.major, "many customers affected (stated: '两百多号人' = 200)"),
])
def test_stated_figures_are_judged_by_the_channel_thresholds(text: str, severity: Severity,
                                                             reason: str) -> None:
    # Given an audience or a count in the text; when assessed; then the channel's thresholds apply
    found, reasons = assess(complaint(text), RULES, repeat=False)
    assert found is severity and reason in reasons[0]


@pytest.mark.parametrize(("text", "amounts"), [
    ("装修公司收了我两万块定金", {"CNY": 20_000}),
    ("前后花了五万多，还是漏油", {"CNY": 50_000}),
    ("亏了十几万", {"CNY": 110_000}),
    ("多扣了一百二十块", {"CNY": 120}),
    ("扣了十几分", {}),
    ("twelve hundred dollars", {"USD": 1200}),
    ("the fees added up to $3k", {"USD": 3000}),
    ("i'm out five grand", {"USD": 5000}),
    ("fifty euros", {"EUR": 50}),
    # a sum named before the number, or paid after it
    ("合同总价八万六，装好半年", {"CNY": 86_000}), ("物业费加车位费一共九千六", {"CNY": 9600}),
    ("机票全额退款七千二，还没到账", {"CNY": 7200}), ("笔记本九千九买的", {"CNY": 9900}),
    ("一共三千多次", {}), ("总共一千多人受影响", {}), ("旧车抵了五万二", {"CNY": 52_000}),
    ("储值卡里还有八千多余额", {"CNY": 8000}), ("车款可是二十六万八", {"CNY": 268_000}),
    # round 9: a price told by 的, dollars in Chinese, sums told by what they are or by a verb
    ("买的五千三的按摩椅坏了", {"CNY": 5300}), ("十八万的车开了一个月", {"CNY": 180_000}),
    ("一万多的粉丝都看到了", {}), ("三千多的步数没同步", {}), ("付了一万一千美元", {"USD": 11_000}),
    ("车险定损明明是八千七", {"CNY": 8700}), ("卡被人刷了三万二", {"CNY": 32_000}),
    ("that's thousands of dollars", {"USD": 2000}), ("fifteen thousand in medical bills", {"CNY": 15_000}),
    ("someone withdrew twelve thousand from my account", {"CNY": 12_000}),
    ("重疾险保额三十万，说不赔就不赔", {"CNY": 300_000}), ("变速箱坏了，修一下要六万多", {"CNY": 60_000}),
])
def test_amounts_written_in_words(text: str, amounts: dict[str, float]) -> None:
    assert word_amounts(fold(text)) == amounts


@pytest.mark.parametrize(("text", "amounts"), [
    ("five figures in lost sales", {"USD": 10_000}), ("a four-figure charge for an MRI", {"USD": 1000}),
    ("fifteen thousand in bills", {"USD": 15_000}), ("a column with six-figure circulation", {}),
    ("丢了 five figures 的货", {"CNY": 10_000}),  # a text with Chinese: the default currency
])
def test_an_amount_naming_no_currency_in_a_latin_text_is_in_the_latin_currency(
        text: str, amounts: dict[str, float]) -> None:
    # Given the policy's currencies (CNY by default, USD for a text without Chinese)
    assert (RULES.default_currency, RULES.latin_currency) == ("CNY", "USD")
    # When the amounts are read, Then "five figures" is dollars in English and yuan beside Chinese
    assert word_amounts(fold(text), default_currency="CNY", latin_currency="USD") == amounts


@pytest.mark.parametrize(("text", "reason"), [
    ("前前后后被骗了RMB 53,000", "amount 53,000 CNY"), ("I was charged £12,500 for nothing", "amount 12,500 GBP"),
    ("Your outage cost my shop five figures in lost sales", "amount 10,000 USD"),
])
def test_amounts_after_a_chinese_word_in_pounds_or_in_figures_are_read(text: str, reason: str) -> None:
    found, reasons = assess(complaint(text), RULES, repeat=False)
    assert found is Severity.major and reason in reasons[0]


@pytest.mark.parametrize(("text", "severity", "signal"), [
    # injury and hospital in other words
    ("小孩被玩具划伤了眼睛，缝了五针", Severity.major, "safety"),
    ("吃了凉皮我们都进了医院，输了两天液", Severity.major, "safety"),
    ("The bike's handlebar snapped and I broke my collarbone", Severity.major, "safety"),
    ("My wife was rushed to the emergency room", Severity.major, "safety"),
    # hazards and near misses
    ("插头一插上就冒烟，还有焦味", Severity.urgent, "hazard"),
    ("The light switch sparks every time", Severity.urgent, "hazard"),
    ("热水器差点爆了", Severity.urgent, "safety, near miss"),
    ("The heater almost caught fire", Severity.urgent, "safety, near miss"),
    # health
    ("孩子脸上起了一片疹子", Severity.urgent, "health"),
    ("I felt nauseous and dizzy after the juice", Severity.urgent, "health"),
    # legal action said indirectly
    ("这事咱们法庭上说", Severity.major, "legal_action"),
    ("我会通过法律途径维护权益", Severity.major, "legal_action"),
    ("I have retained counsel", Severity.major, "legal_action"),
    ("If you don't refund me I'll sue", Severity.major, "legal_action"),
    # regulators
    ("我打了12345政府热线", Severity.urgent, "regulator"),
    ("I've reported you to the Better Business Bureau", Severity.urgent, "regulator"),
    ("I'm sending this to the attorney general", Severity.urgent, "regulator"),
    # media
    ("这件事我会发到微博上", Severity.urgent, "media"),
    ("I'm posting this on Facebook tonight", Severity.urgent, "media"),
    # personal data
    ("你们是不是把我的个人信息泄露了", Severity.urgent, "data_leak"),
    ("You mailed my tax documents to my old roommate", Severity.urgent, "data_leak"),
    # fraud
    ("有人用我的账号在你们平台贷了款", Severity.urgent, "fraud"),
    ("I see transactions I didn't authorize", Severity.urgent, "fraud"),
    ("合同上的签名也不是我签的", Severity.urgent, "fraud"),
    ("Your agent forged my signature to add a rider", Severity.urgent, "fraud"),
    ("Your tenant portal shows my SSN in plain text to other tenants", Severity.urgent, "data_leak"),
    ("银行客服把我的余额和流水告诉了我前夫", Severity.urgent, "data_leak"),
    ("Prepare to be served.", Severity.major, "legal_action"),
    ("请准备好应诉。", Severity.major, "legal_action"),
    ("I have blistering burns on both thighs", Severity.major, "safety"),
    ("My dad passed away after the nursing home missed his medication", Severity.major, "safety"),
    ("Fix it or it all goes on Reddit with screenshots", Severity.urgent, "media"),
    ("燃气表附近老有一股臭鸡蛋味", Severity.urgent, "hazard"),
    ("奶茶喝完半小时我就开始吐", Severity.urgent, "health"),
    ("My son got zapped plugging in your phone charger", Severity.major, "safety"),
    ("I'm still picking shards out of my arms", Severity.major, "safety"),
    ("The handle got hot enough to burn my palm", Severity.major, "safety"),
    ("酸奶里吃出一小块碎玻璃，还好没吞下去", Severity.urgent, "hazard"),
    ("阳台玻璃护栏松了，一推就晃", Severity.urgent, "hazard"),
    ("Airbag warning light has been on since delivery", Severity.urgent, "hazard"),
    ("在医院APP上居然能看到另一个病人的检查结果", Severity.urgent, "data_leak"),
    ("Your tracking page shows any customer's full name and address", Severity.urgent, "data_leak"),
    ("刚下完单就接到骗子电话，是不是你们泄露的？", Severity.urgent, "data_leak"),
    ("主板好好的，这不就是骗钱吗？", Severity.urgent, "fraud"),
    ("Somebody initialed it for me", Severity.urgent, "fraud"),
    ("快递柜的门突然弹开，正好磕到我闺女眼角，血流了一脸", Severity.major, "safety"),
    ("电动车刹车失灵撞上了货车，人没抢救过来", Severity.major, "safety"),
    ("The lid blew off and my wife has blisters up her whole forearm", Severity.major, "safety"),
    ("上周有辆车差点撞到推婴儿车的邻居", Severity.urgent, "hazard"),
    ("Steering locked up on me in a parking lot", Severity.urgent, "hazard"),
    ("My e-scooter battery hisses and smells like nail polish remover", Severity.urgent, "hazard"),
    ("我妈吃了以后一直心慌失眠", Severity.urgent, "health"),
    ("Twenty minutes later my lips and tongue were tingling and going numb", Severity.urgent, "health"),
    ("我给市长信箱写了信", Severity.urgent, "regulator"),
    ("账号显示在外地登录，还用我的余额买了点卡", Severity.urgent, "fraud"),
    ("我从来没有在你们这里办过卡，却被催收还款", Severity.urgent, "fraud"),
    ("Unknown $78 charge on my card", Severity.urgent, "fraud"),
    ("用这个App才一周，通讯录好像被全部上传了", Severity.urgent, "data_leak"),
    ("包裹里夹着另一个顾客的快递单", Severity.urgent, "data_leak"),
    ("Your rep read my full card number back to me on speaker", Severity.urgent, "data_leak"),
    # round 9: harm told plainly in other words
    ("工地的塔吊倒下来砸死了一个工人", Severity.major, "safety"),
    ("我爸摔了一跤，在医院住了半个月的院", Severity.major, "safety"),
    ("刹车失灵撞上护栏，断了两根肋骨", Severity.major, "safety"),
    ("热水器喷出的水把孩子烫得脱了一层皮", Severity.major, "safety"),
    ("电暖器倒了，窗帘一下就着了", Severity.major, "safety"),
    ("Three broken toes from the pallet your driver dropped", Severity.major, "safety"),
    ("My son's wrist is broken after the slide gave way", Severity.major, "safety"),
    ("She was admitted overnight for observation", Severity.major, "safety"),
    ("The space heater tipped and the rug caught", Severity.major, "safety"),
    ("A pedestrian died when your bus mounted the kerb", Severity.major, "safety"),
    ("This is about the salmonella in your chicken wraps", Severity.major, "safety"),
    ("司机一脚急刹，我差点从座位上飞出去", Severity.urgent, "hazard"),
    ("下坡的时候刹车一点反应都没有", Severity.urgent, "hazard"),
    ("The accelerator got stuck on the highway", Severity.urgent, "hazard"),
    ("The outlet sparked when I plugged the kettle in", Severity.urgent, "hazard"),
    ("That loose handrail means someone is going to fall", Severity.urgent, "hazard"),
    ("Your van nearly ran over my daughter in the car park", Severity.urgent, "hazard"),
    ("这事我已经委托律所处理了", Severity.major, "legal_action"),
    ("说不通就让法官来评评理", Severity.major, "legal_action"),
    ("My cousin is a litigator and she's drafting a demand letter", Severity.major, "legal_action"),
    ("You were served this morning", Severity.major, "legal_action"),
    ("I don't want to have to sue, but I will if this drags on", Severity.major, "legal_action"),
    ("没经过我同意就给我开通了会员，每月扣三十", Severity.urgent, "fraud"),
    ("我根本没申请过这张信用卡", Severity.urgent, "fraud"),
    ("You keep billing me for a second line I never ordered", Severity.urgent, "fraud"),
    ("另一个用户登录后，看到的是我的订单和地址", Severity.urgent, "data_leak"),
    ("The portal showed me another patient's records", Severity.urgent, "data_leak"),
    ("I'm reporting this to the FAA", Severity.urgent, "regulator"),
    ("你们真以为我不敢找媒体？", Severity.urgent, "media"),
    ("吃完肚子绞痛，一晚上跑了五趟厕所", Severity.urgent, "health"),
    # round 10
    ("儿子从滑梯上摔下来，小臂打了石膏", Severity.major, "safety"),
    ("孩子误喝了清洁剂，洗了胃", Severity.major, "safety"),
    ("My brother died in that crash, and the recall notice came three weeks later", Severity.major, "safety"),
    ("A ceiling tile fell and my son's head wound needed staples", Severity.major, "safety"),
    ("插座里滋滋作响，还有股焦味", Severity.urgent, "hazard"),
    ("Burning smell from the dryer every time it runs", Severity.urgent, "hazard"),
    ("I nearly got T-boned because the app sent me the wrong way", Severity.urgent, "hazard"),
    ("If this isn't resolved by Friday my attorney will file", Severity.major, "legal_action"),
    ("You'll be hearing from Hartley & Moss LLP", Severity.major, "legal_action"),
    ("这件事不给我满意的答复，我们就只能诉诸法律了", Severity.major, "legal_action"),
    ("If I don't hear back by Monday this goes on Facebook", Severity.urgent, "media"),
    ("My card was used to buy $600 of gift cards on your site. Wasn't me.", Severity.urgent, "fraud"),
    ("收银员趁我不注意多刷了我一次卡", Severity.urgent, "fraud"),
    ("快递箱子上印着我完整的身份证号", Severity.urgent, "data_leak"),
])
def test_each_concept_is_found_in_other_words(text: str, severity: Severity, signal: str) -> None:
    # Given a paraphrase of a concept; when assessed; then its signal, naming the matched phrase
    found, reasons = assess(complaint(text), RULES, repeat=False)
    assert found is severity
    assert f"{signal} (" in reasons[0]


@pytest.mark.parametrize("text", [
    "我不想起诉，只要退款", "还好孩子没有受伤", "没有起火，就是有点异响", "店员很冲，我也懒得去消协",
    "I am not looking to sue anyone", "Luckily no one was injured", "No lawyers needed, fix the bill",
    "I bought this online and it arrived broken", "This has hurt my credit score", "My phone died",
    "手机屏幕碎了", "我在网上买的鞋子尺码不对",
    # ordinary wording that a loose pattern would take for a signal
    "椅子腿断了", "快递盒被划破了", "手机摔下来屏幕碎了", "这事真让人头疼", "服务态度让我很不舒服",
    "车头被划破了一道", "刹车片更换收费太贵", "我要更新个人信息", "看到新闻说你们降价了",
    "The ice cream melted in delivery", "The handle came off after a week", "I need to verify my identity",
    "The account is in my name", "My television stopped working", "I made a payment online",
    "The ATM swallowed my card", "poorly stitched seams", "The apples were bruised",
    "I got quite a shock when I saw the bill", "My father passed away and the bank froze the account",
    "I didn't make the payment on time", "I received an item I never ordered",
    "Please update my personal information", "This is a breach of contract", "The paint is blistering",
    "My battery drained overnight", "The room got hot because the AC broke", "I owe money to the hospital",
    "快递员没经同意就把包裹放在门口", "You changed my statement date without telling me",
    "I was a paralegal for years, so I read the contract", "我跟前台打了一个月的嘴皮子官司",
    "My phone died at the airport", "Luckily nobody got hurt, but the chair is badly made",
])
def test_negated_and_ordinary_wording_is_no_signal(text: str) -> None:
    found, reasons = assess(complaint(text), RULES, repeat=False)
    assert (found, reasons) == (Severity.general, ["severity general: no severity signal"])


@pytest.mark.parametrize("text", ["不小心摔倒了，手腕骨折", "没想到孩子吃完就过敏住院了"])
def test_words_that_only_look_like_a_negation_do_not_cancel(text: str) -> None:
    assert assess(complaint(text), RULES, repeat=False)[0] is Severity.major


@pytest.mark.parametrize("text", [
    # counterfactuals: what did not and will not happen
    "说实话这事换别人可能早就去告你们了，我只想退钱", "我要是有几十万粉丝，你们早就慌了",
    "If this was a bigger purchase I'd probably be calling a lawyer",
    "Hypothetically, if your oven had burned my roast I'd be annoyed",
    "If this power bank ever swells up or catches fire I'm done with your brand",
    # figures of speech and words that only look like a signal
    "I'm sick of waiting for the refund", "Your website is a total dumpster fire",
    "Your app says I burned 40,000 calories on a walk", "This bank is bleeding me dry with fees",
    "Your hold music is going to be the death of me", "Booked a non-smoking room, it was dirty",
    "The smoke detector chirps all night", "The couch arrived with a broken leg",
    "气得我脑袋都要炸了，退个款要填五张表", "这种操作太恶心人了", "外卖放了香菜，我真的是吐了",
    "客服让我拍视频证明，我拍了也不给退", "你们直播间说这个锅不粘", "早餐难吃到我想报警",
    "你们App上的爆炸红包活动一分钱没到账", "This is ridiculous, I want a refund",
    "Even if I wanted to sue over a $40 charge it wouldn't be worth it", "页面写电池健康90%，到手78%",
    "This whole thing has given me a headache", "I posted a review on your Facebook page and it got deleted",
    "My phone died after the update", "燃气没有泄漏，就是阀门老化", "这酒店的隔音简直炸裂",
    "My friend says take you to small claims, lol, over a $30 toaster? No thanks.", "车里多了好几个烟头，太恶心了",
    "扫地机器人撞到桌腿就卡着不动", "差点就信了你们的广告",
    # 万一 is "in case", 千万 "by all means", and points are not money
    "万一孩子摔了算谁的？", "千万别买他们家的东西", "花一万两千积分换的保温杯是坏的",
    # round 9: what a friend says, what was once meant, and more figures of speech
    "我朋友说这种情况可以起诉，但我觉得没必要", "本来打算找律师的，后来一想算了",
    "If I wanted to sue I would have already", "I suppose I could take you to small claims, but it's $30",
    "My phone blew up with 200 promo texts", "Seven of the bulbs burned out in a month",
    "The menu promised an explosion of flavor", "The food court tables were filthy",
    "My daughter Sue ordered the wrong colour", "That hot sauce had my mouth on fire",
    "Your fire-grilled burger was dry", "这个APP更新之后我心态直接炸了", "家长群都炸了，大家都在问退费",
    # round 10
    "我朋友说这种情况可以去起诉，我觉得犯不上", "My buddy's a lawyer but honestly I don't want trouble",
    "I burned through my data by the 12th", "The trash truck keeps skipping our house on Maple Court",
    "太阳能热水器管子半夜爆了，喷了一屋子水", "健康险是不是有15天犹豫期？", "商家说要拍开箱视频才能赔",
])
def test_counterfactuals_and_figures_of_speech_are_no_signal(text: str) -> None:
    found, reasons = assess(complaint(text), RULES, repeat=False)
    assert (found, reasons) == (Severity.general, ["severity general: no severity signal"])


@pytest.mark.parametrize(("text", "severity"), [
    # the same words, meant: a conditional threat still counts, harm that happened still counts
    ("如果再不处理我就去告你们", Severity.major), ("If you don't fix this I'm calling a lawyer", Severity.major),
    ("The charger caught fire on my desk", Severity.major), ("I felt sick after eating it", Severity.urgent),
    ("Your staff blocked the fire exit with boxes", Severity.urgent),
    ("Just about burned my hand on the handle", Severity.urgent),
    ("近万人的信息被泄露了", Severity.major),
])
def test_the_same_words_meant_still_count(text: str, severity: Severity) -> None:
    assert assess(complaint(text), RULES, repeat=False)[0] is severity


# Floors on the share right of the rules alone (overall, each language). heldout.jsonl was written
# before the rules were changed; its authors then wrote the rules, so it flatters them (98.6 %).
# heldout-14.jsonl to heldout-23.jsonl were each written by an AI assistant that saw neither the
# rules nor the other sets, and measured once (see tests/test_severity_model.py for them with the
# severity model). The tuning sets (heldout-2..13 measured once each, then retired into tuning)
# guard against a change that undoes what they taught; rounds 5 to 10 of the rules mended misses
# read in tuning-5..13 and the training sets (89-94 % now). See tests/data/severity/README.md.
@pytest.mark.parametrize(("name", "floor", "lang_floor"), [
    ("heldout.jsonl", HELD_OUT_FLOOR, 0.93),
    *((f"heldout-{n}.jsonl", *floors) for n, floors in HELDOUT_RULES.items()),
    ("tuning-13.jsonl", 0.89, 0.88),
    ("tuning-12.jsonl", 0.89, 0.89),
    ("tuning-11.jsonl", 0.91, 0.88),
    ("tuning-10.jsonl", 0.92, 0.91),
    ("tuning-9.jsonl", 0.93, 0.91),
    ("tuning-8.jsonl", 0.90, 0.90),
    ("tuning-7.jsonl", 0.91, 0.90),
    ("tuning-6.jsonl", 0.94, 0.93),
    ("tuning-5.jsonl", 0.91, 0.89),
    ("tuning.jsonl", 0.97, 0.95),
    ("tuning-2.jsonl", 0.97, 0.95),
    ("tuning-3.jsonl", 0.97, 0.95),
    ("tuning-4.jsonl", 0.97, 0.95),
])
def test_the_share_right_stays_above_the_floor(name: str, floor: float, lang_floor: float) -> None:
    # Given hand-labelled cases; when all are assessed
    figures = measure_severity([DATA / name])
    # Then the share right stays above the stated floors
    assert figures.share >= floor, figures.misses
    assert all(right / cases >= lang_floor for right, cases in figures.by_lang.values()), figures.by_lang


def test_the_held_out_set_has_at_least_100_cases_per_language() -> None:
    figures = measure_severity([DATA / "heldout.jsonl"])
    assert set(figures.by_lang) == {"zh", "en"}
    assert all(cases >= 100 for _, cases in figures.by_lang.values())


@pytest.mark.parametrize(("pattern", "problem"), [
    ("(unclosed", "is not a regular expression"),
    ("起诉.*法院", "unbounded"),
])
def test_a_bad_phrase_pattern_is_a_config_error_naming_the_field(tmp_path: Path, pattern: str,
                                                                 problem: str) -> None:
    import yaml

    from services.common.policy import DEFAULT_POLICY

    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    raw["router"]["severity"]["keywords"][0]["patterns"] = [pattern]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)
    assert "router.severity.keywords" in str(caught.value) and problem in str(caught.value)


@pytest.mark.parametrize(("pattern", "needs"), [
    ("差点|险些", (True, False)), (r"\bsparks?\b", (False, True)), ("spark|差点", (False, False)),
    ("(?:差)?x", (False, True)), ("[\u3400-\u9fff]{2}", (True, False)), ("[^a-z]差", (True, False)),
    ("(?!差)x", (False, True)), (r"\d+", (False, False)), ("(?:火|fire){1,2}", (False, False)),
    ("a{0,2}差", (True, False)), ("(?:差|点)+", (True, False)), ("(unclosed", (False, False)),
])
def test_what_a_pattern_needs_of_the_text_is_read_from_the_pattern(pattern: str, needs: tuple[bool, bool]) -> None:
    # Given a phrase pattern; when read; then (needs a Chinese character, needs a Latin letter)
    assert severity._needs(pattern) == needs


def test_skipping_the_patterns_of_the_other_script_finds_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given every hand-labelled case, Chinese, English and mixed, as the router folds it
    texts = [fold(case["text"]) for path in sorted(DATA.glob("*.jsonl"))
             for case in map(json.loads, path.read_text(encoding="utf-8").splitlines())]
    texts += [fold("我的iPhone充电时起火了, the charger caught fire"), fold("12345"), fold("")]
    found = [phrase_findings(text, RULES) for text in texts]
    # When every pattern is searched in every text, as if none needed a script
    monkeypatch.setattr(severity, "_for_scripts", lambda sources, has_cjk, has_latin: sources)
    # Then the findings are the same, text for text
    assert [phrase_findings(text, RULES) for text in texts] == found
