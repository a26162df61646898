 B1m.gpt_neox.layers.1.post_attention_layernorm.biasJ€ˆP‚¸¦Îg·9¥Ø7­¸ L¸bÜ8J9UüD¸ÉZ9úŒº·ï¸j&¹³V/8ÞN¸¤Çó¸Þð…8>R6|á+¸>]¤·óâƒ8æ{y9}8T¹„UK9 ’7:»m9p¹ðÅE9T=½¹ä
š¸:g¹B,…8`ó7