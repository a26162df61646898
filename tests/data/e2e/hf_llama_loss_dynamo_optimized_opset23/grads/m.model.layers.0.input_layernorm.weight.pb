 B'm.model.layers.0.input_layernorm.weightJ€
(;.ח9ׂ‏¿¹E:)k;>׳₪:(:„÷@ÿ·nj»2ׂװ:₪0-:ֱ±H:ר¦B¸X‚Z¸jַ»ייj:VB÷s÷צ`=9‚C׀¹19¦:“§g÷S›,;M_8״ןו÷־¼–:&a£÷גטו÷–;z[:v=b÷