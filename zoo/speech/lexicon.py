"""The word lists behind zoo.speech.grammar: one concept per line, its form in every language, its tags.

Kept apart from the grammar so the rules stay short. Every line is parsed at import and checked (five
fields, known genders, known tags), so a typo fails loudly here, not as a garbled sentence later.

Nouns:      english | spanish | french | german | mandarin | tags
    english  "apple", or "man/men" where the plural is irregular
    spanish  gender + singular, "m pez" (the plural is derived; "m ratón/ratones" where the accent moves)
    french   gender + singular, "f pomme" ("f pomme de terre/pommes de terre" where derivation fails)
    german   gender + singular/plural, "m Apfel/Äpfel"; a third form is the accusative and dative singular of
             the weak nouns ("m Junge/Jungen/Jungen"); mass nouns give no plural ("f Milch")
    mandarin measure word + noun, "个 苹果"; "-" for mass nouns, which never take a number
Adjectives: english | spanish | french | german | mandarin | tags
    spanish  masculine singular ("rojo"), or all four forms m.sg/f.sg/m.pl/f.pl where derivation fails
    french   the same; those in FRENCH_PRENOMINAL go before the noun (beauty, age, goodness, size)
    tags     the noun tags it describes; "estar": Spanish says "está cansado" (a state), not "es" (a property)
    german   the predicative form, "/stem" where the inflected stem drops an e ("teuer/teur": "teure")
    mandarin the core ("大": attributive "大", predicative "很大") or "attributive/predicative" ("红色的/是红色的")
Verbs:      english | spanish | french | german | mandarin | objects | subjects   (an indented line continues one)
    english  base form ("eat"), "have/has" for an irregular third person
    spanish, french  the infinitive, "tener: tengo tienes tiene tenemos tienen" for the five persons we use
             (I, you singular, he/she, we, they) where the conjugation is irregular
    german   the infinitive, "essen: isst isst" overriding the irregular 2nd and 3rd person singular
    mandarin the verb, "有/没有" with its negated form where 不 is wrong
    objects  the noun tags it takes; subjects: "p" people, "pa" people and animals

Noun tags: person, animal, food, mass, drink, thing, p (portable), open (can be opened), doc (printed),
text (can be read or learnt), song, vehicle, car (can be driven), place.
"""

NOUN_TAGS = frozenset("person animal food mass drink thing p open doc text song vehicle car place".split())

NOUNS = """
man/men | m hombre | m homme | m Mann/Männer | 个 男人 | person
woman/women | f mujer | f femme | f Frau/Frauen | 个 女人 | person
child/children | m niño | m enfant | n Kind/Kinder | 个 孩子 | person
boy | m chico | m garçon | m Junge/Jungen/Jungen | 个 男孩 | person
girl | f chica | f fille | n Mädchen/Mädchen | 个 女孩 | person
teacher | m profesor | m professeur | m Lehrer/Lehrer | 位 老师 | person
doctor | m médico | m médecin | m Arzt/Ärzte | 位 医生 | person
student | m estudiante | m étudiant | m Student/Studenten/Studenten | 个 学生 | person
friend | m amigo | m ami | m Freund/Freunde | 个 朋友 | person
neighbour | m vecino | m voisin | m Nachbar/Nachbarn/Nachbarn | 个 邻居 | person
cook | m cocinero | m cuisinier | m Koch/Köche | 个 厨师 | person
farmer | m granjero | m fermier | m Bauer/Bauern/Bauern | 个 农民 | person
baker | m panadero | m boulanger | m Bäcker/Bäcker | 个 面包师 | person
driver | m conductor | m chauffeur | m Fahrer/Fahrer | 个 司机 | person
singer | m cantante | m chanteur | m Sänger/Sänger | 个 歌手 | person
king | m rey | m roi | m König/Könige | 个 国王 | person
queen | f reina | f reine | f Königin/Königinnen | 个 王后 | person
police officer | m policía | m policier | m Polizist/Polizisten/Polizisten | 个 警察 | person
nurse | f enfermera | f infirmière | f Krankenschwester/Krankenschwestern | 个 护士 | person
waiter | m camarero | m serveur | m Kellner/Kellner | 个 服务员 | person
dog | m perro | m chien | m Hund/Hunde | 只 狗 | animal p
cat | m gato | m chat | f Katze/Katzen | 只 猫 | animal p
horse | m caballo | m cheval | n Pferd/Pferde | 匹 马 | animal
cow | f vaca | f vache | f Kuh/Kühe | 头 牛 | animal
bird | m pájaro | m oiseau | m Vogel/Vögel | 只 鸟 | animal p
fish/fish | m pez | m poisson | m Fisch/Fische | 条 鱼 | animal p
mouse/mice | m ratón/ratones | f souris | f Maus/Mäuse | 只 老鼠 | animal p
rabbit | m conejo | m lapin | n Kaninchen/Kaninchen | 只 兔子 | animal p
duck | m pato | m canard | f Ente/Enten | 只 鸭子 | animal
chicken | f gallina | f poule | n Huhn/Hühner | 只 母鸡 | animal
sheep/sheep | f oveja | m mouton | n Schaf/Schafe | 只 羊 | animal
pig | m cerdo | m cochon | n Schwein/Schweine | 头 猪 | animal
lion | m león/leones | m lion | m Löwe/Löwen/Löwen | 头 狮子 | animal
bear | m oso | m ours | m Bär/Bären/Bären | 头 熊 | animal
monkey | m mono | m singe | m Affe/Affen/Affen | 只 猴子 | animal
elephant | m elefante | m éléphant | m Elefant/Elefanten/Elefanten | 头 大象 | animal
frog | f rana | f grenouille | m Frosch/Frösche | 只 青蛙 | animal p
snake | f serpiente | m serpent | f Schlange/Schlangen | 条 蛇 | animal
apple | f manzana | f pomme | m Apfel/Äpfel | 个 苹果 | food p
banana | m plátano | f banane | f Banane/Bananen | 根 香蕉 | food p
egg | m huevo | m œuf | n Ei/Eier | 个 鸡蛋 | food p
cake | m pastel | m gâteau | m Kuchen/Kuchen | 块 蛋糕 | food p
sandwich | m sándwich/sándwiches | m sandwich | n Sandwich/Sandwiches | 个 三明治 | food p
tomato/tomatoes | m tomate | f tomate | f Tomate/Tomaten | 个 西红柿 | food p
potato/potatoes | f patata | f pomme de terre/pommes de terre | f Kartoffel/Kartoffeln | 个 土豆 | food p
carrot | f zanahoria | f carotte | f Karotte/Karotten | 根 胡萝卜 | food p
lemon | m limón/limones | m citron | f Zitrone/Zitronen | 个 柠檬 | food p
pear | f pera | f poire | f Birne/Birnen | 个 梨 | food p
onion | f cebolla | m oignon | f Zwiebel/Zwiebeln | 个 洋葱 | food p
pizza | f pizza | f pizza | f Pizza/Pizzas | 块 比萨饼 | food p
sausage | f salchicha | f saucisse | f Wurst/Würste | 根 香肠 | food p
cucumber | m pepino | m concombre | f Gurke/Gurken | 根 黄瓜 | food p
peach | m melocotón/melocotones | f pêche | m Pfirsich/Pfirsiche | 个 桃子 | food p
cherry | f cereza | f cerise | f Kirsche/Kirschen | 颗 樱桃 | food p
bread | m pan | m pain | n Brot | - 面包 | food mass
cheese | m queso | m fromage | m Käse | - 奶酪 | food mass
rice | m arroz | m riz | m Reis | - 米饭 | food mass
soup | f sopa | f soupe | f Suppe | - 汤 | food mass
meat | f carne | f viande | n Fleisch | - 肉 | food mass
milk | f leche | m lait | f Milch | - 牛奶 | drink mass
tea | m té | m thé | m Tee | - 茶 | drink mass
coffee | m café | m café | m Kaffee | - 咖啡 | drink mass
juice | m zumo | m jus | m Saft | - 果汁 | drink mass
wine | m vino | m vin | m Wein | - 葡萄酒 | drink mass
beer | f cerveza | f bière | n Bier | - 啤酒 | drink mass
lemonade | f limonada | f limonade | f Limonade | - 柠檬水 | drink mass
table | f mesa | f table | m Tisch/Tische | 张 桌子 | thing
chair | f silla | f chaise | m Stuhl/Stühle | 把 椅子 | thing
bed | f cama | m lit | n Bett/Betten | 张 床 | thing
door | f puerta | f porte | f Tür/Türen | 扇 门 | thing open
window | f ventana | f fenêtre | n Fenster/Fenster | 扇 窗户 | thing open
box/boxes | f caja | f boîte | f Kiste/Kisten | 个 盒子 | thing p open
bottle | f botella | f bouteille | f Flasche/Flaschen | 个 瓶子 | thing p open
bag | f bolsa | m sac | f Tasche/Taschen | 个 包 | thing p open
key | f llave | f clé | m Schlüssel/Schlüssel | 把 钥匙 | thing p
phone | m teléfono | m téléphone | n Telefon/Telefone | 部 电话 | thing p
computer | m ordenador | m ordinateur | m Computer/Computer | 台 电脑 | thing p
lamp | f lámpara | f lampe | f Lampe/Lampen | 盏 灯 | thing p
clock | m reloj | f horloge | f Uhr/Uhren | 个 钟 | thing p
cup | f taza | f tasse | f Tasse/Tassen | 个 杯子 | thing p
plate | m plato | f assiette | m Teller/Teller | 个 盘子 | thing p
knife/knives | m cuchillo | m couteau | n Messer/Messer | 把 刀 | thing p
spoon | f cuchara | f cuillère | m Löffel/Löffel | 把 勺子 | thing p
ball | f pelota | m ballon | m Ball/Bälle | 个 球 | thing p
hat | m sombrero | m chapeau | m Hut/Hüte | 顶 帽子 | thing p
shoe | m zapato | f chaussure | m Schuh/Schuhe | 只 鞋 | thing p
shirt | f camisa | f chemise | n Hemd/Hemden | 件 衬衫 | thing p
coat | m abrigo | m manteau | m Mantel/Mäntel | 件 大衣 | thing p
umbrella | m paraguas/paraguas | m parapluie | m Regenschirm/Regenschirme | 把 雨伞 | thing p open
picture | m cuadro | m tableau | n Bild/Bilder | 幅 画 | thing p
flower | f flor | f fleur | f Blume/Blumen | 朵 花 | thing p
tree | m árbol | m arbre | m Baum/Bäume | 棵 树 | thing
pen | m bolígrafo | m stylo | m Stift/Stifte | 支 笔 | thing p
pencil | m lápiz | m crayon | m Bleistift/Bleistifte | 支 铅笔 | thing p
mirror | m espejo | m miroir | m Spiegel/Spiegel | 面 镜子 | thing p
basket | f cesta | m panier | m Korb/Körbe | 个 篮子 | thing p
candle | f vela | f bougie | f Kerze/Kerzen | 支 蜡烛 | thing p
toy | m juguete | m jouet | n Spielzeug/Spielzeuge | 个 玩具 | thing p
guitar | f guitarra | f guitare | f Gitarre/Gitarren | 把 吉他 | thing p
blanket | f manta | f couverture | f Decke/Decken | 条 毯子 | thing p
wallet | f cartera | m portefeuille | f Geldbörse/Geldbörsen | 个 钱包 | thing p open
ticket | m billete | m billet | f Fahrkarte/Fahrkarten | 张 票 | thing p
gift | m regalo | m cadeau | n Geschenk/Geschenke | 份 礼物 | thing p open
book | m libro | m livre | n Buch/Bücher | 本 书 | doc text p open
letter | f carta | f lettre | m Brief/Briefe | 封 信 | doc text p open
newspaper | m periódico | m journal | f Zeitung/Zeitungen | 份 报纸 | doc text p
magazine | f revista | m magazine | f Zeitschrift/Zeitschriften | 本 杂志 | doc text p
map | m mapa | f carte | f Karte/Karten | 张 地图 | doc text p
story/stories | f historia | f histoire | f Geschichte/Geschichten | 个 故事 | text
word | f palabra | m mot | n Wort/Wörter | 个 词 | text
lesson | f lección/lecciones | f leçon | f Lektion/Lektionen | 节 课 | text
poem | m poema | m poème | n Gedicht/Gedichte | 首 诗 | text
recipe | f receta | f recette | n Rezept/Rezepte | 个 食谱 | text
message | m mensaje | m message | f Nachricht/Nachrichten | 条 信息 | text
song | f canción/canciones | f chanson | n Lied/Lieder | 首 歌 | song
car | m coche | f voiture | n Auto/Autos | 辆 汽车 | vehicle car
bus/buses | m autobús/autobuses | m bus | m Bus/Busse | 辆 公共汽车 | vehicle car
bicycle | f bicicleta | m vélo | n Fahrrad/Fahrräder | 辆 自行车 | vehicle
train | m tren | m train | m Zug/Züge | 列 火车 | vehicle
boat | m barco | m bateau | n Boot/Boote | 条 船 | vehicle
plane | m avión/aviones | m avion | n Flugzeug/Flugzeuge | 架 飞机 | vehicle
truck | m camión/camiones | m camion | m Lastwagen/Lastwagen | 辆 卡车 | vehicle car
motorcycle | f moto | f moto | n Motorrad/Motorräder | 辆 摩托车 | vehicle
house | f casa | f maison | n Haus/Häuser | 座 房子 | place
kitchen | f cocina | f cuisine | f Küche/Küchen | 个 厨房 | place
garden | m jardín/jardines | m jardin | m Garten/Gärten | 个 花园 | place
park | m parque | m parc | m Park/Parks | 个 公园 | place
school | f escuela | f école | f Schule/Schulen | 所 学校 | place
shop | f tienda | m magasin | m Laden/Läden | 家 商店 | place
market | m mercado | m marché | m Markt/Märkte | 个 市场 | place
station | f estación/estaciones | f gare | m Bahnhof/Bahnhöfe | 个 车站 | place
library/libraries | f biblioteca | f bibliothèque | f Bibliothek/Bibliotheken | 个 图书馆 | place
restaurant | m restaurante | m restaurant | n Restaurant/Restaurants | 家 餐馆 | place
hospital | m hospital | m hôpital | n Krankenhaus/Krankenhäuser | 家 医院 | place
office | f oficina | m bureau | n Büro/Büros | 个 办公室 | place
street | f calle | f rue | f Straße/Straßen | 条 街 | place
city/cities | f ciudad | f ville | f Stadt/Städte | 座 城市 | place
village | m pueblo | m village | n Dorf/Dörfer | 个 村子 | place
beach/beaches | f playa | f plage | m Strand/Strände | 个 海滩 | place
forest | m bosque | f forêt | m Wald/Wälder | 片 森林 | place
bank | m banco | f banque | f Bank/Banken | 家 银行 | place
room | f habitación/habitaciones | f chambre | n Zimmer/Zimmer | 个 房间 | place
museum | m museo | m musée | n Museum/Museen | 个 博物馆 | place
hotel | m hotel | m hôtel | n Hotel/Hotels | 家 酒店 | place
"""

# Where "in the X" is wrong: english, french and german preposition, mandarin localiser (default in/dans/in/里).
PLACE_PREPOSITIONS = {
    "station": ("at", "à", "an", "里"),
    "market": ("at", "à", "auf", "里"),
    "street": ("on", "dans", "auf", "上"),
    "beach": ("on", "sur", "an", "上"),
    "bank": ("at", "à", "in", "里"),
    "school": ("at", "à", "in", "里"),
    "hospital": ("at", "à", "in", "里"),
    "restaurant": ("at", "à", "in", "里"),
    "office": ("at", "à", "in", "里"),
    "museum": ("at", "à", "in", "里"),
    "hotel": ("at", "à", "in", "里"),
    "library": ("at", "à", "in", "里"),
}

ADJECTIVES = """
red | rojo | rouge | rot | 红色的/是红色的 | thing food vehicle doc
blue | azul | bleu | blau | 蓝色的/是蓝色的 | thing vehicle doc
green | verde | vert | grün | 绿色的/是绿色的 | thing food vehicle doc
yellow | amarillo | jaune | gelb | 黄色的/是黄色的 | thing food vehicle doc
black | negro | noir | schwarz | 黑色的/是黑色的 | thing animal vehicle doc
white | blanco | blanc/blanche/blancs/blanches | weiß | 白色的/是白色的 | thing animal vehicle doc
grey | gris | gris | grau | 灰色的/是灰色的 | thing animal vehicle
purple | morado | violet/violette/violets/violettes | violett | 紫色的/是紫色的 | thing vehicle doc
big | grande | grand | groß | 大 | thing animal vehicle place food
small | pequeño | petit | klein | 小 | thing animal vehicle place food
new | nuevo | nouveau/nouvelle/nouveaux/nouvelles | neu | 新 | thing vehicle place doc
old | viejo | vieux/vieille/vieux/vieilles | alt | 旧 | thing vehicle place doc
expensive | caro | cher | teuer/teur | 贵 | thing vehicle food drink
beautiful | bonito | beau/belle/beaux/belles | schön | 漂亮 | thing vehicle place animal
heavy | pesado | lourd | schwer | 重 | thing
long | largo | long/longue/longs/longues | lang | 长 | thing vehicle text
clean | limpio | propre | sauber | 干净 | thing vehicle place
dirty | sucio | sale | schmutzig | 脏 | thing vehicle place animal
hot | caliente | chaud | heiß | 热 | food drink
cold | frío | froid | kalt | 冷 | food drink
fresh | fresco | frais/fraîche/frais/fraîches | frisch | 新鲜 | food drink
sweet | dulce | sucré | süß | 甜 | food drink
delicious | delicioso | délicieux | lecker | 好吃 | food
modern | moderno | moderne | modern | 现代 | thing vehicle place
strange | extraño | étrange | seltsam | 奇怪 | thing animal person text
famous | famoso | célèbre | berühmt | 有名 | person place song doc
quiet | tranquilo | calme | ruhig | 安静 | person animal place
fast | rápido | rapide | schnell | 快 | vehicle animal
slow | lento | lent | langsam | 慢 | vehicle animal
empty | vacío | vide | leer | 空的/是空的 | thing place
full | lleno | plein | voll | 满 | thing place
dark | oscuro | sombre | dunkel/dunkl | 暗 | place
bright | luminoso | lumineux | hell | 明亮 | place
important | importante | important | wichtig | 重要 | text doc person
interesting | interesante | intéressant | interessant | 有趣 | text doc person place
soft | suave | doux/douce/doux/douces | weich | 软 | thing food
hard | duro | dur | hart | 硬 | thing food
round | redondo | rond | rund | 圆的/是圆的 | thing food
young | joven/joven/jóvenes/jóvenes | jeune | jung | 年轻 | person animal
friendly | amable | gentil/gentille/gentils/gentilles | freundlich | 友好 | person animal
happy | feliz/feliz/felices/felices | heureux | glücklich | 快乐 | person animal
sad | triste | triste | traurig | 难过 | person animal estar
tired | cansado | fatigué | müde/müd | 累 | person animal estar
rich | rico | riche | reich | 有钱 | person
poor | pobre | pauvre | arm | 穷 | person
strong | fuerte | fort | stark | 强壮 | person animal
clever | inteligente | intelligent | klug | 聪明 | person animal
lazy | perezoso | paresseux | faul | 懒 | person animal
busy | ocupado | occupé | beschäftigt | 忙 | person estar
"""
# French adjectives that go before the noun (beauty, age, goodness, size), and their masculine form before a
# vowel ("un vieil homme"); Grevisse, Le Bon Usage, §§ 331-333.
FRENCH_PRENOMINAL = {"grand": None, "petit": None, "nouveau": "nouvel", "vieux": "vieil", "beau": "bel",
                     "long": None, "jeune": None}

VERBS = """
eat | comer | manger | essen: isst isst | 吃 | food | pa
drink | beber | boire: bois bois boit buvons boivent | trinken | 喝 | drink | pa
see | ver: veo ves ve vemos ven | voir: vois vois voit voyons voient
    | sehen: siehst sieht | 看见/没看见 | person animal thing vehicle place food | pa
buy | comprar | acheter: achète achètes achète achetons achètent | kaufen | 买 | food drink p vehicle doc | p
sell | vender | vendre: vends vends vend vendons vendent | verkaufen | 卖 | food p vehicle doc | p
have/has | tener: tengo tienes tiene tenemos tienen | avoir: ai as a avons ont
    | haben: hast hat | 有/没有 | animal p vehicle doc | p
read | leer | lire: lis lis lit lisons lisent | lesen: liest liest | 读 | text | p
write | escribir | écrire: écris écris écrit écrivons écrivent | schreiben | 写 | text | p
open | abrir | ouvrir: ouvre ouvres ouvre ouvrons ouvrent | öffnen | 打开 | open | p
close | cerrar: cierro cierras cierra cerramos cierran | fermer | schließen | 关上 | open | p
look for | buscar | chercher | suchen | 找 | person animal p doc vehicle | pa
find | encontrar: encuentro encuentras encuentra encontramos encuentran | trouver
    | finden | 找到/没找到 | person animal p doc | pa
carry | llevar | porter | tragen: trägst trägt | 搬 | p food | p
wash | lavar | laver | waschen: wäschst wäscht | 洗 | p vehicle food animal | p
cook | cocinar | cuisiner | kochen | 做 | food | p
know | conocer: conozco conoces conoce conocemos conocen | connaître: connais connais connaît connaissons connaissent
    | kennen | 认识 | person place | p
visit | visitar | visiter | besuchen | 参观 | place | p
draw | dibujar | dessiner | zeichnen | 画 | person animal thing vehicle place | p
clean | limpiar | nettoyer: nettoie nettoies nettoie nettoyons nettoient | putzen | 打扫 | place vehicle | p
repair | reparar | réparer | reparieren | 修理 | thing vehicle | p
use | usar | utiliser | benutzen | 用 | p vehicle | p
take | tomar | prendre: prends prends prend prenons prennent | nehmen: nimmst nimmt | 拿 | food drink p doc | p
bring | traer: traigo traes trae traemos traen | apporter | bringen | 带 | food drink p doc | p
order | pedir: pido pides pide pedimos piden | commander | bestellen | 点 | food drink | p
watch | mirar | regarder | beobachten | 看 | person animal vehicle | pa
hear | oír: oigo oyes oye oímos oyen | entendre: entends entends entend entendons entendent
    | hören | 听见/没听见 | person animal vehicle song | pa
call | llamar | appeler: appelle appelles appelle appelons appellent | rufen | 叫 | person animal | p
feed | alimentar | nourrir: nourris nourris nourrit nourrissons nourrissent | füttern | 喂 | animal | p
catch | atrapar | attraper | fangen: fängst fängt | 抓 | animal | pa
drive | conducir: conduzco conduces conduce conducimos conducen
    | conduire: conduis conduis conduit conduisons conduisent
    | fahren: fährst fährt | 开 | car | p
choose | elegir: elijo eliges elige elegimos eligen | choisir: choisis choisis choisit choisissons choisissent
    | wählen | 选 | food drink p doc vehicle | p
forget | olvidar | oublier | vergessen: vergisst vergisst | 忘记/没忘记 | p doc text | p
cut | cortar | couper | schneiden | 切 | food | p
count | contar: cuento cuentas cuenta contamos cuentan | compter | zählen | 数 | animal p food vehicle | p
photograph | fotografiar: fotografío fotografías fotografía fotografiamos fotografían | photographier
    | fotografieren | 拍 | person animal place vehicle thing | p
hide | esconder | cacher | verstecken | 藏 | p doc food | pa
throw | lanzar | lancer: lance lances lance lançons lancent | werfen: wirfst wirft | 扔 | p | p
sing | cantar | chanter | singen | 唱 | song | p
learn | aprender | apprendre: apprends apprends apprend apprenons apprennent | lernen | 学 | song text | p
understand | entender: entiendo entiendes entiende entendemos entienden
    | comprendre: comprends comprends comprend comprenons comprennent
    | verstehen | 懂 | text | p
love | amar | aimer | lieben | 爱 | person animal | p
"""

# Hours for "at N o'clock" (one to twelve), weekdays, seasons and other time phrases: english, spanish,
# french, german, mandarin.
TIMES = """
today | hoy | aujourd'hui | heute | 今天
tomorrow | mañana | demain | morgen | 明天
every day | todos los días | tous les jours | jeden Tag | 每天
in the morning | por la mañana | le matin | am Morgen | 早上
in the afternoon | por la tarde | l'après-midi | am Nachmittag | 下午
at night | por la noche | la nuit | in der Nacht | 晚上
now | ahora | maintenant | jetzt | 现在
this week | esta semana | cette semaine | diese Woche | 这个星期
at the weekend | el fin de semana | le week-end | am Wochenende | 周末
on Monday | el lunes | lundi | am Montag | 星期一
on Tuesday | el martes | mardi | am Dienstag | 星期二
on Wednesday | el miércoles | mercredi | am Mittwoch | 星期三
on Thursday | el jueves | jeudi | am Donnerstag | 星期四
on Friday | el viernes | vendredi | am Freitag | 星期五
on Saturday | el sábado | samedi | am Samstag | 星期六
on Sunday | el domingo | dimanche | am Sonntag | 星期天
in summer | en verano | en été | im Sommer | 夏天
in winter | en invierno | en hiver | im Winter | 冬天
in spring | en primavera | au printemps | im Frühling | 春天
in autumn | en otoño | en automne | im Herbst | 秋天
"""
